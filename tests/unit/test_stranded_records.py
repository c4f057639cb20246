"""Stranded records: a store that fails between two writes, or a process that dies half-way,
must never leave a resource nobody can finish or delete.

Creates and transitions store the resource and its operation in one transaction; a record
stranded anyway (written before that, or a synchronous tenant create whose process died) is
marked failed by reconcile and can always be deleted, which releases its name and ports.
"""

from __future__ import annotations

from typing import Any

import pytest

from pgfleet.core.models import utcnow_iso
from pgfleet.domains.reconcile import service as reconcile

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"
LONG_AGO = "2020-01-01T00:00:00.000Z"


def port_claims(fake_ports: Any) -> dict[str, Any]:
    return {k: v for k, v in fake_ports.store.claims.items() if k.startswith("port#")}


def records_of(fake_ports: Any, kind: str) -> list[dict[str, Any]]:
    return [r for (k, _), r in fake_ports.store.records.items() if k == kind]


@pytest.mark.parametrize(
    ("path", "body", "kind"),
    [
        (SINGLE, {"name": "orders-db"}, "instance"),
        (CLUSTERS, {"name": "orders-ha", "node_count": 3}, "cluster"),
    ],
)
def test_a_store_failing_before_the_operation_leaves_nothing(call, fake_ports, path, body, kind):
    fake_ports.store.fail_writes_of = {"operation"}
    status, got = call("POST", path, body)
    assert status == 500, got
    assert records_of(fake_ports, kind) == []
    assert fake_ports.store.claims == {}, "neither the name nor a port stays claimed"
    assert fake_ports.secrets.values == {} and fake_ports.queue.messages == []
    fake_ports.store.fail_writes_of = set()
    status, got = call("POST", path, body)  # the same name is free again
    assert status == 202, got
    fake_ports.drain()
    assert call("GET", f"{path}/{got['id']}")[1]["status"] == "running"


def test_a_replica_create_failing_before_its_operation_leaves_nothing(call, fake_ports):
    _, instance = call("POST", SINGLE, {"name": "orders-db"})
    fake_ports.drain()
    ports_before = port_claims(fake_ports)
    fake_ports.store.fail_writes_of = {"operation"}
    status, _ = call("POST", f"{SINGLE}/{instance['id']}/replicas", {"replica_count": 1})
    assert status == 500
    assert records_of(fake_ports, "replica") == [] and port_claims(fake_ports) == ports_before
    fake_ports.store.fail_writes_of = set()
    status, body = call("POST", f"{SINGLE}/{instance['id']}/replicas", {"replica_count": 1})
    assert status == 202 and body["replicas"][0]["name"] == "orders-db-replica-1", body


def test_a_transition_failing_before_its_operation_changes_nothing(call, fake_ports):
    _, created = call("POST", SINGLE, {"name": "orders-db"})
    fake_ports.drain()
    before = fake_ports.store.get("instance", created["id"])
    fake_ports.store.fail_writes_of = {"operation"}
    assert call("POST", f"{SINGLE}/{created['id']}/stop")[0] == 500
    assert fake_ports.store.get("instance", created["id"]) == before  # still running, same revision
    fake_ports.store.fail_writes_of = set()
    assert call("POST", f"{SINGLE}/{created['id']}/stop")[0] == 202


def strand(fake_ports: Any, kind: str, record_id: str, **changes: Any) -> None:
    """What the old code left after a crash between its writes: a transitional record whose
    operation was never stored, untouched since."""
    fake_ports.store.records[(kind, record_id)].update({"updated_at": LONG_AGO, **changes})


def test_reconcile_fails_a_stranded_create_and_delete_releases_it(call, fake_ports):
    _, created = call("POST", SINGLE, {"name": "orders-db"})
    fake_ports.queue.messages.clear()
    fake_ports.store.records.pop(("operation", created["operation_id"]))
    strand(fake_ports, "instance", created["id"])
    assert len(port_claims(fake_ports)) == 1

    actions = reconcile.run(fake_ports)
    assert any(created["id"] in a and "stranded" in a for a in actions), actions
    _, got = call("GET", f"{SINGLE}/{created['id']}")
    assert got["status"] == "failed" and "was never stored" in got["status_reason"], got
    assert call("DELETE", f"{SINGLE}/{created['id']}")[0] == 202
    fake_ports.drain()
    assert call("GET", f"{SINGLE}/{created['id']}")[0] == 404
    assert port_claims(fake_ports) == {}
    assert call("POST", SINGLE, {"name": "orders-db"})[0] == 202  # the name is free


@pytest.mark.parametrize("status", ["creating", "resizing", "deleting"])
def test_delete_works_from_any_stuck_state_without_waiting_for_reconcile(call, fake_ports, status):
    _, created = call("POST", SINGLE, {"name": "orders-db"})
    fake_ports.drain()
    # Its last operation ended (or was never stored) but the record still says `status`.
    strand(fake_ports, "instance", created["id"], status=status)
    assert call("DELETE", f"{SINGLE}/{created['id']}")[0] == 202
    fake_ports.drain()
    assert call("GET", f"{SINGLE}/{created['id']}")[0] == 404
    assert fake_ports.store.claims == {}


def test_a_create_in_progress_is_not_stranded(call, fake_ports):
    _, created = call("POST", SINGLE, {"name": "orders-db"})
    strand(fake_ports, "instance", created["id"])  # old, but its operation is still pending
    assert not any(created["id"] in a and "stranded" in a for a in reconcile.run(fake_ports))
    status, body = call("DELETE", f"{SINGLE}/{created['id']}")
    assert status == 409 and body["error"]["code"] == "invalid_state"
    # A recent record with no operation is not judged yet either.
    _, other = call("POST", SINGLE, {"name": "other-db"})
    fake_ports.store.records.pop(("operation", other["operation_id"]))
    fake_ports.store.records[("instance", other["id"])]["updated_at"] = utcnow_iso()
    assert call("DELETE", f"{SINGLE}/{other['id']}")[0] == 409


class ProcessDied(BaseException):
    """The control plane's process ending mid-request (no `except Exception` runs)."""


def test_a_tenant_create_that_died_half_way_is_failed_by_reconcile_and_deletable(call, fake_ports):
    _, instance = call("POST", SINGLE, {"name": "orders-db"})
    fake_ports.drain()
    tenants = f"{SINGLE}/{instance['id']}/tenants"
    admin = fake_ports.engine.database_admin(instance["id"])
    create_tenant = admin.create_tenant

    def dies(*args: Any) -> str:
        raise ProcessDied

    admin.create_tenant = dies
    with pytest.raises(ProcessDied):
        call("POST", tenants, {"tenant_id": "tenant-a"})
    admin.create_tenant = create_tenant
    (record,) = records_of(fake_ports, "tenant")
    assert record["status"] == "creating"
    status, body = call("DELETE", f"{tenants}/tenant-a")
    assert status == 409, body  # not yet: a create may still be running

    strand(fake_ports, "tenant", record["id"])
    actions = reconcile.run(fake_ports)
    assert any("tenant-a" in a and "stranded" in a for a in actions), actions
    assert call("GET", tenants)[1]["tenants"][0]["status"] == "failed"
    status, body = call("DELETE", f"{tenants}/tenant-a")
    assert status == 202, body
    fake_ports.drain()
    _, op = call("GET", f"/api/v1/operations/{body['operation_id']}")
    assert op["status"] == "succeeded", op
    assert "never finished" in op["steps"][1]["reason"]  # no final backup of a tenant that never was
    assert records_of(fake_ports, "tenant") == []
    status, body = call("POST", tenants, {"tenant_id": "tenant-a"})  # its names are free again
    assert status == 201, body


def test_a_stranded_tenant_can_be_deleted_before_reconcile(call, fake_ports):
    _, instance = call("POST", SINGLE, {"name": "orders-db"})
    fake_ports.drain()
    tenants = f"{SINGLE}/{instance['id']}/tenants"
    assert call("POST", tenants, {"tenant_id": "tenant-a"})[0] == 201
    (record,) = records_of(fake_ports, "tenant")
    strand(fake_ports, "tenant", record["id"], status="creating")
    assert call("DELETE", f"{tenants}/tenant-a")[0] == 202
    fake_ports.drain()
    assert records_of(fake_ports, "tenant") == []
