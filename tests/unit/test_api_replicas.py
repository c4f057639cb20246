"""The read-replica API through the api handler, with fake ports below the domains."""

from __future__ import annotations

from typing import Any

from pgfleet.core.operations import StepContext
from pgfleet.domains.replicas import service as replicas
from pgfleet.domains.replicas import workflows as replica_workflows
from pgfleet.ports.engine import replication_slot_name

SINGLE = "/api/v1/postgres/single"


def running_instance(call: Any, fake_ports: Any, name: str = "orders-db", tenant: str = "acme") -> str:
    status, body = call("POST", SINGLE, {"name": name}, tenant=tenant)
    assert status == 202, body
    fake_ports.drain()
    return str(body["id"])


def add_replicas(call: Any, iid: str, count: int = 1, **kwargs: Any) -> tuple[int, Any]:
    return call(
        "POST", f"{SINGLE}/{iid}/replicas", {"replica_count": count, "cpu": 1, "memory": 512}, **kwargs
    )


def test_create_is_202_then_running_with_lag(call, fake_ports):
    iid = running_instance(call, fake_ports)
    status, body = add_replicas(call, iid, 2)
    assert status == 202, body
    assert [r["name"] for r in body["replicas"]] == ["orders-db-replica-1", "orders-db-replica-2"]
    assert all(r["status"] == "creating" and r["instance_id"] == iid for r in body["replicas"])
    assert body["operation_ids"] == [r["operation_id"] for r in body["replicas"]]
    fake_ports.drain()

    status, listing = call("GET", f"{SINGLE}/{iid}/replicas")
    assert status == 200, listing
    got = listing["replicas"]
    assert [r["id"] for r in got] == [r["id"] for r in body["replicas"]]
    assert all(r["status"] == "running" and r["memory"] == 512 for r in got)
    assert all(r["state"] == "streaming" and r["lag_bytes"] == 0 and r["lag_seconds"] == 0.0 for r in got)
    _, instance = call("GET", f"{SINGLE}/{iid}")
    ports = {instance["endpoint"]["port"], *(r["endpoint"]["port"] for r in got)}
    assert len(ports) == 3, "every replica has its own endpoint"
    status, op = call("GET", f"/api/v1/operations/{body['operation_ids'][0]}")
    assert status == 200 and op["status"] == "succeeded" and op["type"] == "replica.create"
    assert [s["name"] for s in op["steps"]] == ["provision", "start", "mark_running"]
    # A stopped replica shows as disconnected, holding WAL on the instance.
    fake_ports.engine.servers[got[0]["id"]]["running"] = False
    _, listing = call("GET", f"{SINGLE}/{iid}/replicas")
    assert listing["replicas"][0]["state"] == "disconnected" and listing["replicas"][0]["lag_bytes"] > 0


def test_instance_must_be_running(call, fake_ports):
    status, created = call("POST", SINGLE, {"name": "orders-db"})
    status, body = add_replicas(call, created["id"])
    assert status == 409 and body["error"]["code"] == "invalid_state"  # still creating
    fake_ports.drain()
    call("POST", f"{SINGLE}/{created['id']}/stop")
    fake_ports.drain()
    status, body = add_replicas(call, created["id"])
    assert status == 409 and body["error"]["details"]["status"] == "stopped"
    assert fake_ports.store.list("replica")[0] == []


def test_other_tenants_and_unknown_ids_are_404(call, fake_ports):
    iid = running_instance(call, fake_ports)
    _, body = add_replicas(call, iid)
    fake_ports.drain()
    rid = body["replicas"][0]["id"]
    assert add_replicas(call, iid, tenant="globex")[0] == 404
    assert call("GET", f"{SINGLE}/{iid}/replicas", tenant="globex")[0] == 404
    assert call("DELETE", f"{SINGLE}/{iid}/replicas/{rid}", tenant="globex")[0] == 404
    assert add_replicas(call, "pgi-000000000000")[0] == 404
    assert call("DELETE", f"{SINGLE}/{iid}/replicas/pgr-000000000000")[0] == 404
    # A replica is only found under its own instance.
    other = running_instance(call, fake_ports, name="other-db")
    assert call("DELETE", f"{SINGLE}/{other}/replicas/{rid}")[0] == 404
    status, listing = call("GET", f"{SINGLE}/{iid}/replicas", role="admin", tenant=None)
    assert status == 200 and len(listing["replicas"]) == 1


def test_invalid_requests_are_422_and_change_nothing(call, fake_ports):
    iid = running_instance(call, fake_ports)
    for bad in ({"replica_count": 0}, {"replica_count": 6}, {"memory": 100}, {"cpu": 0}, {"zone": "a"}):
        status, body = call("POST", f"{SINGLE}/{iid}/replicas", bad)
        assert status == 422, (bad, body)
        assert body["error"]["code"] == "validation_error" and body["error"]["details"]
    assert call("DELETE", f"{SINGLE}/{iid}/replicas/not-a-replica")[0] == 404  # no such id can exist
    assert fake_ports.store.list("replica")[0] == [] and fake_ports.queue.messages == []


def test_viewer_reads_but_cannot_add(call, fake_ports):
    iid = running_instance(call, fake_ports)
    assert add_replicas(call, iid, role="viewer")[0] == 403
    assert call("GET", f"{SINGLE}/{iid}/replicas", role="viewer") == (200, {"replicas": []})


def test_at_most_five_replicas(call, fake_ports):
    iid = running_instance(call, fake_ports)
    assert add_replicas(call, iid, 4)[0] == 202
    status, body = add_replicas(call, iid, 2)
    assert status == 409 and body["error"]["details"] == {"replicas": 4, "max_replicas": 5}
    assert add_replicas(call, iid, 1)[0] == 202


def test_idempotency_key_replays_the_same_replicas(call, fake_ports):
    iid = running_instance(call, fake_ports)
    h = {"Idempotency-Key": "replicas-1"}
    s1, first = add_replicas(call, iid, 2, headers=h)
    s2, second = add_replicas(call, iid, 2, headers=h)
    assert s1 == s2 == 202 and first == second
    assert len(fake_ports.store.list("replica")[0]) == 2
    assert add_replicas(call, iid, 3, headers=h)[0] == 422


def test_delete_drops_server_slot_port_and_record(call, fake_ports):
    iid = running_instance(call, fake_ports)
    _, body = add_replicas(call, iid, 2)
    fake_ports.drain()
    by_name = {r["name"]: r["id"] for r in body["replicas"]}
    gone, kept = by_name["orders-db-replica-1"], by_name["orders-db-replica-2"]
    claims_before = set(fake_ports.store.claims)
    status, deleting = call("DELETE", f"{SINGLE}/{iid}/replicas/{gone}")
    assert status == 202 and deleting["status"] == "deleting"
    assert call("DELETE", f"{SINGLE}/{iid}/replicas/{gone}")[0] == 409  # already deleting
    fake_ports.drain()
    _, listing = call("GET", f"{SINGLE}/{iid}/replicas")
    assert [r["id"] for r in listing["replicas"]] == [kept]
    assert gone not in fake_ports.engine.servers
    assert fake_ports.engine.slots[iid] == {replication_slot_name(kept)}
    released = claims_before - set(fake_ports.store.claims)
    assert len(released) == 2  # its port and its name
    # The freed name is reused by the next replica.
    _, again = add_replicas(call, iid)
    assert again["replicas"][0]["name"] == "orders-db-replica-1"


def test_delete_needs_a_running_instance(call, fake_ports):
    iid = running_instance(call, fake_ports)
    _, body = add_replicas(call, iid)
    fake_ports.drain()
    call("POST", f"{SINGLE}/{iid}/stop")
    fake_ports.drain()
    status, err = call("DELETE", f"{SINGLE}/{iid}/replicas/{body['replicas'][0]['id']}")
    assert status == 409 and err["error"]["code"] == "invalid_state"


def test_failed_create_is_failed_with_reason_and_deletable(call, fake_ports):
    iid = running_instance(call, fake_ports)
    fake_ports.engine.fail_on.add("provision_replica")
    _, body = add_replicas(call, iid)
    fake_ports.drain()
    _, listing = call("GET", f"{SINGLE}/{iid}/replicas")
    replica = listing["replicas"][0]
    assert replica["status"] == "failed" and "provision_replica failed (injected)" in replica["status_reason"]
    assert call("DELETE", f"{SINGLE}/{iid}/replicas/{replica['id']}")[0] == 202
    fake_ports.drain()
    assert call("GET", f"{SINGLE}/{iid}/replicas")[1] == {"replicas": []}


def test_destroy_all_for_instance_removes_every_replica(call, fake_ports):
    iid = running_instance(call, fake_ports)
    other = running_instance(call, fake_ports, name="other-db")
    add_replicas(call, iid, 3)
    _, kept = add_replicas(call, other)
    fake_ports.drain()
    ctx = StepContext(fake_ports, {"id": "op-test", "resource_id": iid})
    assert replica_workflows.destroy_all_for_instance(ctx) == "deleted 3 replica(s)"
    assert replica_workflows.destroy_all_for_instance(ctx) == "no replicas"
    assert [r["id"] for r in fake_ports.store.list("replica")[0]] == [kept["replicas"][0]["id"]]
    assert sorted(fake_ports.engine.servers) == sorted([iid, other, kept["replicas"][0]["id"]])


def test_reconcile_restarts_a_dead_replica(call, fake_ports):
    iid = running_instance(call, fake_ports)
    _, body = add_replicas(call, iid)
    fake_ports.drain()
    rid = body["replicas"][0]["id"]
    assert replicas.reconcile(fake_ports) == []
    fake_ports.engine.servers[rid]["running"] = False
    (line,) = replicas.reconcile(fake_ports)
    assert line.startswith(rid) and "started it" in line
    assert fake_ports.engine.servers[rid]["running"]
    _, listing = call("GET", f"{SINGLE}/{iid}/replicas")
    assert "reconcile" in listing["replicas"][0]["status_reason"]


def test_openapi_documents_the_replica_routes(call):
    _, spec = call("GET", "/api/v1/openapi.json", role=None)
    assert {"get", "post"} <= set(spec["paths"][f"{SINGLE}/{{instance_id}}/replicas"])
    assert "delete" in spec["paths"][f"{SINGLE}/{{instance_id}}/replicas/{{replica_id}}"]


def test_reconcile_resumes_a_lost_create(call, fake_ports):
    iid = running_instance(call, fake_ports)
    _, body = add_replicas(call, iid)
    op_id = body["operation_ids"][0]
    fake_ports.queue.messages.clear()  # the worker lost the message
    assert replicas.reconcile(fake_ports) == []  # too recent to call it lost
    fake_ports.store.update("operation", op_id, {"updated_at": "2020-01-01T00:00:00.000Z"})
    (line,) = replicas.reconcile(fake_ports)
    assert f"resumed replica.create operation {op_id}" in line
    fake_ports.drain()
    assert call("GET", f"{SINGLE}/{iid}/replicas")[1]["replicas"][0]["status"] == "running"
