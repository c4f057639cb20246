"""Input that used to answer 500 (an overflow, an unbounded value, a schedule that never
rests), and answers that gave away whether another tenant's id exists."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"
BACKUP = "/api/v1/backup"


def _instance(call, fake_ports, name="orders-db", tenant="acme") -> str:
    status, body = call("POST", SINGLE, {"name": name}, tenant=tenant)
    assert status == 202, body
    fake_ports.drain()
    return str(body["id"])


def _backups(fake_ports) -> list:
    return fake_ports.store.list("backup")[0]


@pytest.mark.parametrize("period", ["P99999999Y", "P101Y", "PT99999999999999999999H", "P" + "9" * 400 + "D"])
def test_an_enormous_retention_period_is_422(call, fake_ports, period):
    iid = _instance(call, fake_ports)
    before = len(_backups(fake_ports))
    body = {"backupType": "FULL", "targetId": iid, "retentionPeriod": period}
    status, got = call("POST", f"{BACKUP}/execute", body)
    assert status == 422 and got["error"]["code"] == "validation_error", got
    assert got["error"]["details"][0]["field"] == "retentionPeriod"
    assert len(_backups(fake_ports)) == before


def test_the_longest_retention_period_is_kept(call, fake_ports):
    iid = _instance(call, fake_ports)
    body = {"backupType": "FULL", "targetId": iid, "retentionPeriod": "P100Y"}
    status, got = call("POST", f"{BACKUP}/execute", body)
    assert status == 202, got
    expiry = fake_ports.store.get("backup", got["backupId"])["retention_expiry"]
    assert datetime.fromisoformat(expiry.replace("Z", "+00:00")).year >= datetime.now(UTC).year + 99


@pytest.mark.parametrize(
    "tags",
    [{f"k{i}": "v" for i in range(51)}, {"k" * 129: "v"}, {"k": "v" * 257}, {"": "v"}],
    ids=["51 tags", "long key", "long value", "empty key"],
)
def test_unbounded_tags_are_422(call, fake_ports, tags):
    iid = _instance(call, fake_ports)
    before = len(_backups(fake_ports))
    status, got = call("POST", f"{BACKUP}/execute", {"backupType": "FULL", "targetId": iid, "tags": tags})
    assert status == 422 and got["error"]["details"][0]["field"].startswith("tags"), got
    assert len(_backups(fake_ports)) == before
    many = {f"k{i}": "v" * 256 for i in range(50)}
    assert call("POST", f"{BACKUP}/execute", {"backupType": "FULL", "targetId": iid, "tags": many})[0] == 202


@pytest.mark.parametrize(
    "expression",
    ["rate(0 minutes)", "rate(0 hours)", "rate(99999999999 days)", "cron(*/0 * * * ? *)",
     "at(2026-13-45T00:00:00)"],
)  # fmt: skip
def test_a_schedule_that_cannot_run_sanely_is_422(call, fake_ports, expression):
    iid = _instance(call, fake_ports)
    status, got = call("PUT", f"{SINGLE}/{iid}/backup/schedule", {"full_backup_cron": expression})
    assert status == 422 and got["error"]["details"]["field"] == "full_backup_cron", got
    assert not [n for n in fake_ports.scheduler.schedules if n.startswith(f"pgfleet-backup-{iid}")]
    assert call("GET", f"{SINGLE}/{iid}/backup/schedule")[1]["full_backup_cron"] is None


def test_a_zero_rate_already_stored_is_never_due():
    """The local ticker fires a schedule again at next_after(...): a zero rate would be due
    at once, for ever."""
    from pgfleet.core import schedule_expressions

    now = datetime.now(UTC)
    assert schedule_expressions.next_after("rate(0 minutes)", now) is None
    assert schedule_expressions.next_after("rate(1 minute)", now) > now


def _tenant_being_deleted(call, iid: str, kind: str = SINGLE) -> None:
    assert call("POST", f"{kind}/{iid}/tenants", {"tenant_id": "shop-a"})[0] == 201
    assert call("DELETE", f"{kind}/{iid}/tenants/shop-a")[0] == 202  # not drained: still deleting


@pytest.mark.parametrize("action", ["pause", "resume", "resize"])
def test_another_tenants_id_is_404_whatever_its_state(call, fake_ports, action):
    iid = _instance(call, fake_ports)
    _tenant_being_deleted(call, iid)
    body = {"cpu": 2} if action == "resize" else None
    status, got = call("POST", f"{SINGLE}/{iid}/{action}", body, tenant="globex")
    assert status == 404 and got["error"]["code"] == "not_found", got
    assert call("POST", f"{SINGLE}/{iid}/{action}", body)[0] == 409  # its own tenant learns why


def test_another_tenants_cluster_is_404_for_pause_and_resume(call, fake_ports):
    status, body = call("POST", CLUSTERS, {"name": "ha-db", "node_count": 2})
    assert status == 202, body
    fake_ports.drain()
    _tenant_being_deleted(call, body["id"], CLUSTERS)
    for action in ("pause", "resume"):
        assert call("POST", f"{CLUSTERS}/{body['id']}/{action}", tenant="globex")[0] == 404
        assert call("POST", f"{CLUSTERS}/{body['id']}/{action}")[0] == 409
