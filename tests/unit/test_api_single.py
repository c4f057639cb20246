"""The single-instance API through the api handler, with fake ports below the domains."""

from __future__ import annotations


def test_create_returns_202_with_credentials_once(call, fake_ports):
    status, body = call("POST", "/api/v1/postgres/single", {"name": "orders-db"})
    assert status == 202, body
    assert body["status"] == "creating"
    assert body["operation_id"].startswith("op-")
    assert body["credentials"]["password"]
    assert body["credentials"]["uri"].startswith("postgresql://app_admin:")
    fake_ports.drain()
    status, got = call("GET", f"/api/v1/postgres/single/{body['id']}")
    assert status == 200
    assert got["status"] == "running"
    assert "credentials" not in got
    status, op = call("GET", f"/api/v1/operations/{body['operation_id']}")
    assert status == 200 and op["status"] == "succeeded" and op["progress"] == 100
    # No backup on the way to running: the stanza and the first backup are an operation of
    # their own.
    assert [s["name"] for s in op["steps"]] == [
        "configure_archiving", "provision", "start", "create_database", "mark_running",
    ]  # fmt: skip
    assert all(s["reason"] for s in op["steps"])
    assert "first backup" in op["steps"][4]["reason"]


def test_running_before_its_first_backup(call, fake_ports):
    """The create operation ends at running; the first backup follows as its own operation,
    and the instance says where it is."""
    from pgfleet.core import operations

    _, body = call("POST", "/api/v1/postgres/single", {"name": "orders-db"})
    status, got = call("GET", f"/api/v1/postgres/single/{body['id']}")
    assert got["backup_status"] is None and "starts once" in got["backup_status_reason"]
    fake_ports.queue.messages.clear()  # run the create alone, as the first worker would
    assert "succeeded" in operations.run(fake_ports, body["operation_id"])
    status, got = call("GET", f"/api/v1/postgres/single/{body['id']}")
    assert status == 200 and got["status"] == "running" and got["backup_status"] == "pending", got
    backup_op = [m["operation_id"] for m in fake_ports.queue.messages]
    assert len(backup_op) == 1 and got["first_backup_id"].startswith("bkp-")
    assert f"operation {backup_op[0]}" in got["backup_status_reason"]
    assert fake_ports.backup_engine.list_backups(body["id"]) == []  # nothing taken yet
    _, op = call("GET", f"/api/v1/operations/{backup_op[0]}")
    assert op["type"] == "backup.initial" and op["status"] == "pending"
    # lists and lifecycle answers show the same
    _, listing = call("GET", "/api/v1/postgres/single")
    assert listing["instances"][0]["backup_status"] == "pending"
    fake_ports.drain()
    _, got = call("GET", f"/api/v1/postgres/single/{body['id']}")
    assert got["backup_status"] == "completed" and "restorable from then on" in got["backup_status_reason"]
    _, op = call("GET", f"/api/v1/operations/{backup_op[0]}")
    assert op["status"] == "succeeded"
    status, stopping = call("POST", f"/api/v1/postgres/single/{body['id']}/stop")
    assert status == 202 and stopping["backup_status"] == "completed"


def test_the_instance_records_that_it_is_restorable(call, fake_ports):
    """Once a backup has completed the instance records it, and its views stop reading the
    backup catalogue: the first backup's operation writes it, or reconcile when the instance
    was busy with another workflow at that moment."""
    from pgfleet.core import operations
    from pgfleet.domains.reconcile import service as reconcile

    keys = ("first_backup_id", "backup_status", "backup_status_reason")
    _, body = call("POST", "/api/v1/postgres/single", {"name": "orders-db"})
    fake_ports.drain()
    _, before = call("GET", f"/api/v1/postgres/single/{body['id']}")
    record = fake_ports.store.get("instance", body["id"])
    assert (record["backup_status"], record["backup_status_reason"]) == (
        "completed",
        before["backup_status_reason"],
    )
    fake_ports.store.delete("backup", before["first_backup_id"])  # the view no longer reads it
    _, after = call("GET", f"/api/v1/postgres/single/{body['id']}")
    assert {k: after[k] for k in keys} == {k: before[k] for k in keys}
    # Stopped right after its create: the first backup completes while the instance is
    # "stopping", so its operation leaves the record alone; reconcile records it later.
    _, busy = call("POST", "/api/v1/postgres/single", {"name": "busy-db"})
    fake_ports.queue.messages.clear()
    operations.run(fake_ports, busy["operation_id"])
    assert call("POST", f"/api/v1/postgres/single/{busy['id']}/stop")[0] == 202
    fake_ports.drain()  # the first backup, then the stop
    record = fake_ports.store.get("instance", busy["id"])
    assert record["status"] == "stopped" and "backup_status" not in record
    assert call("GET", f"/api/v1/postgres/single/{busy['id']}")[1]["backup_status"] == "completed"
    reconcile.run(fake_ports)
    assert fake_ports.store.get("instance", busy["id"])["backup_status"] == "completed"


def test_no_token_is_401_and_bad_token_is_401(call):
    status, body = call("GET", "/api/v1/postgres/single", role=None)
    assert status == 401 and body["error"]["code"] == "unauthorized" and body["error"]["request_id"]
    status, _ = call("GET", "/api/v1/postgres/single", role=None, headers={"Authorization": "Bearer nope"})
    assert status == 401


def test_viewer_cannot_create_but_can_read(call, fake_ports):
    status, body = call("POST", "/api/v1/postgres/single", {"name": "orders-db"}, role="viewer")
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert fake_ports.store.records == {}
    status, body = call("GET", "/api/v1/postgres/single", role="viewer")
    assert status == 200 and body == {"instances": [], "next_token": None}


def test_invalid_bodies_are_422_and_change_nothing(call, fake_ports):
    for bad in ({"name": "X"}, {"name": "ok-name", "cpu": 0}, {"name": "ok-name", "extra": 1},
                {"name": "ok-name", "username": "postgres"}, {"name": "ok-name", "database": "a;drop"}):  # fmt: skip
        status, body = call("POST", "/api/v1/postgres/single", bad)
        assert status == 422, (bad, body)
        assert body["error"]["code"] == "validation_error" and body["error"]["details"]
    status, body = call("POST", "/api/v1/postgres/single", {"name": "ok-name", "version": "11"})
    assert status == 422 and body["error"]["details"]["field"] == "version"
    assert fake_ports.store.records == {} and fake_ports.queue.messages == []


def test_other_tenants_get_404_admin_sees_all(call, fake_ports):
    _, created = call("POST", "/api/v1/postgres/single", {"name": "orders-db"}, tenant="acme")
    status, _ = call("GET", f"/api/v1/postgres/single/{created['id']}", tenant="globex")
    assert status == 404
    _, listing = call("GET", "/api/v1/postgres/single", tenant="globex")
    assert listing["instances"] == []
    status, _ = call("GET", f"/api/v1/postgres/single/{created['id']}", role="admin", tenant=None)
    assert status == 200


def test_duplicate_name_is_409_per_tenant(call):
    assert call("POST", "/api/v1/postgres/single", {"name": "orders-db"})[0] == 202
    status, body = call("POST", "/api/v1/postgres/single", {"name": "orders-db"})
    assert status == 409 and body["error"]["code"] == "already_exists"
    assert call("POST", "/api/v1/postgres/single", {"name": "orders-db"}, tenant="other")[0] == 202


def test_idempotency_key_replays_the_same_instance(call, fake_ports):
    h = {"Idempotency-Key": "abc-123"}
    s1, first = call("POST", "/api/v1/postgres/single", {"name": "orders-db"}, headers=h)
    s2, second = call("POST", "/api/v1/postgres/single", {"name": "orders-db"}, headers=h)
    assert s1 == s2 == 202 and first["id"] == second["id"]
    assert first["credentials"]["password"] == second["credentials"]["password"]
    status, _ = call("POST", "/api/v1/postgres/single", {"name": "other-db"}, headers=h)
    assert status == 422


def test_lifecycle_and_wrong_state_409(call, fake_ports):
    _, inst = call("POST", "/api/v1/postgres/single", {"name": "orders-db"})
    iid = inst["id"]
    status, body = call("POST", f"/api/v1/postgres/single/{iid}/start")
    assert status == 409 and body["error"]["code"] == "invalid_state"  # still creating
    fake_ports.drain()
    assert call("POST", f"/api/v1/postgres/single/{iid}/start")[0] == 409  # already running
    status, body = call("POST", f"/api/v1/postgres/single/{iid}/stop")
    assert status == 202 and body["status"] == "stopping"
    fake_ports.drain()
    assert call("GET", f"/api/v1/postgres/single/{iid}")[1]["status"] == "stopped"
    assert call("POST", f"/api/v1/postgres/single/{iid}/restart")[0] == 409
    assert call("POST", f"/api/v1/postgres/single/{iid}/start")[0] == 202
    fake_ports.drain()
    assert call("POST", f"/api/v1/postgres/single/{iid}/restart")[0] == 202
    fake_ports.drain()
    assert call("DELETE", f"/api/v1/postgres/single/{iid}")[0] == 202
    assert call("POST", f"/api/v1/postgres/single/{iid}/stop")[0] == 409  # deleting
    fake_ports.drain()
    assert call("GET", f"/api/v1/postgres/single/{iid}")[0] == 404
    assert fake_ports.store.claims == {}  # name and port released
    assert fake_ports.secrets.values == {}


def test_failed_step_marks_instance_failed_with_reason(call, fake_ports):
    fake_ports.engine.fail_on.add("start")
    _, inst = call("POST", "/api/v1/postgres/single", {"name": "orders-db"})
    fake_ports.drain()
    _, got = call("GET", f"/api/v1/postgres/single/{inst['id']}")
    assert got["status"] == "failed" and "start failed (injected)" in got["status_reason"]
    _, op = call("GET", f"/api/v1/operations/{inst['operation_id']}")
    steps = {step["name"]: step["status"] for step in op["steps"]}
    assert op["status"] == "failed" and steps["start"] == "failed"


def test_stats_logs_and_pagination(call, fake_ports):
    ids = [call("POST", "/api/v1/postgres/single", {"name": f"db-{i:02d}"})[1]["id"] for i in range(3)]
    fake_ports.drain()
    status, stats = call("GET", f"/api/v1/postgres/single/{ids[0]}/stats")
    assert status == 200 and stats["connections"]["max"] == 100
    status, logs = call("GET", f"/api/v1/postgres/single/{ids[0]}/logs?limit=5")
    assert status == 200 and logs["lines"][0]["severity"] == "LOG"
    assert call("GET", f"/api/v1/postgres/single/{ids[0]}/logs?limit=0")[0] == 422
    _, page1 = call("GET", "/api/v1/postgres/single?limit=2")
    assert len(page1["instances"]) == 2 and page1["next_token"]
    _, page2 = call("GET", f"/api/v1/postgres/single?limit=2&next_token={page1['next_token']}")
    assert sorted(i["id"] for i in page1["instances"] + page2["instances"]) == sorted(ids)


def test_unknown_ids_are_404(call):
    status, body = call("GET", "/api/v1/postgres/single/pgi-000000000000")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert call("GET", "/api/v1/operations/op-000000000000")[0] == 404
    assert call("GET", "/api/v1/nothing-here")[0] == 404


def test_platform_endpoints_are_public(call):
    assert call("GET", "/api/health", role=None) == (200, {"status": "ok"})
    status, version = call("GET", "/api/version", role=None)
    assert status == 200 and version["name"] == "pgfleet"
    status, spec = call("GET", "/api/v1/openapi.json", role=None)
    assert status == 200 and spec["openapi"].startswith("3.1")
    from openapi_spec_validator import validate

    validate(spec)
    assert "/api/v1/postgres/single" in spec["paths"]
    status, html = call("GET", "/api/v1/docs", role=None)
    assert status == 200 and "swagger" in html.lower() and "unpkg.com" not in html
