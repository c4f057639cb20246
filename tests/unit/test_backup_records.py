"""The backup family's records: snake_case in the store, camelCase only on the wire; records
written before (camelCase inside a verification's checks, a recovery's plan) still render."""

from __future__ import annotations

import re
from typing import Any

BACKUP = "/api/v1/backup"
CAMEL = re.compile(r"[a-z][A-Z]")


def _camel_keys(value: Any, path: str = "") -> list[str]:
    """Every camelCase key at any depth of a stored record."""
    if isinstance(value, list):
        return [k for i, item in enumerate(value) for k in _camel_keys(item, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return []
    found = [f"{path}.{k}" for k in value if CAMEL.search(k)]
    return found + [k for key, item in value.items() for k in _camel_keys(item, f"{path}.{key}")]


def _backed_up_instance(call, fake_ports) -> tuple[str, str]:
    status, inst = call("POST", "/api/v1/postgres/single", {"name": "orders-db"})
    assert status == 202, inst
    fake_ports.drain()
    status, accepted = call("POST", f"/api/v1/postgres/single/{inst['id']}/backup")
    assert status == 202, accepted
    fake_ports.drain()
    return inst["id"], accepted["backup_id"]


def test_verification_and_recovery_records_are_stored_snake_case(call, fake_ports):
    iid, backup_id = _backed_up_instance(call, fake_ports)
    _, started = call("POST", f"{BACKUP}/verify/{backup_id}")
    fake_ports.drain()
    verification = fake_ports.store.get("backup_verification", started["verificationId"])
    assert [c["check_type"] for c in verification["checks"]] == ["CHECKSUM", "STRUCTURE", "CONSISTENCY"]
    assert all(c["error_count"] == 0 for c in verification["checks"])
    assert _camel_keys(verification) == []
    _, initiated = call(
        "POST", f"{BACKUP}/recovery/initiate", {"backupId": backup_id, "recoveryType": "FULL"}
    )
    _, in_place = call(
        "POST", f"{BACKUP}/recovery/initiate",
        {"backupId": backup_id, "recoveryType": "FULL", "recoveryLocation": "IN_PLACE"},
    )  # fmt: skip
    fake_ports.drain()
    for started_recovery in (initiated, in_place):
        recovery = fake_ports.store.get("recovery", started_recovery["recoveryId"])
        assert recovery["plan"]["total_estimated_time"] == started_recovery["estimatedDuration"]
        assert recovery["plan"]["steps"][0]["estimated_duration"].startswith("PT")
        assert {r["check"] for r in recovery["integrity"]} >= {"RECOVERY_TARGET", "CONNECTIVITY"}
        assert _camel_keys(recovery) == []
    # ...and the wire is camelCase
    _, result = call("GET", f"{BACKUP}/verify/{started['verificationId']}")
    assert set(result["integrityChecks"][0]) == {"checkType", "status", "details", "errorCount"}
    _, status = call("GET", f"{BACKUP}/recovery/status/{in_place['recoveryId']}")
    assert {r["check"] for r in status["dataIntegrityResults"]} >= {"RECOVERY_TARGET", "ARCHIVING"}


def test_records_written_camel_case_before_still_render(call, fake_ports):
    iid, backup_id = _backed_up_instance(call, fake_ports)
    fake_ports.store.create(
        "backup_verification",
        {
            "id": "vrf-0123456789ab", "tenant_id": "acme", "parent_id": backup_id, "status": "RUNNING",
            "checks": [{"checkType": "CHECKSUM", "status": "FAILED", "details": "bad page", "errorCount": 2}],
            "created_at": "2025-01-01T00:00:00.000Z", "created_by": "someone", "operation_id": None,
        },
    )  # fmt: skip
    status, result = call("GET", f"{BACKUP}/verify/vrf-0123456789ab")
    assert status == 200, result
    assert result == {
        "verificationId": "vrf-0123456789ab",
        "status": "RUNNING",
        "integrityChecks": [
            {"checkType": "CHECKSUM", "status": "FAILED", "details": "bad page", "errorCount": 2},
            {"checkType": "STRUCTURE", "status": "WARNING", "details": "pending", "errorCount": None},
            {"checkType": "CONSISTENCY", "status": "WARNING", "details": "pending", "errorCount": None},
        ],
        "overallResult": "WARNING",
    }
    # the worker carries on from such a record and leaves it snake_case
    from pgfleet.core import operations

    op = operations.new_operation("backup.verify", "vrf-0123456789ab", "acme")
    fake_ports.store.update("backup_verification", "vrf-0123456789ab", {"operation_id": op["id"]})
    operations.submit(fake_ports, op)
    fake_ports.drain()
    checks = fake_ports.store.get("backup_verification", "vrf-0123456789ab")["checks"]
    assert [c["check_type"] for c in checks] == ["CHECKSUM", "STRUCTURE", "CONSISTENCY"]
    assert _camel_keys(checks) == []
    _, result = call("GET", f"{BACKUP}/verify/vrf-0123456789ab")
    assert result["status"] == "COMPLETED" and result["overallResult"] == "PASSED", result
    # a recovery whose plan was stored as the wire showed it
    _, initiated = call(
        "POST", f"{BACKUP}/recovery/initiate", {"backupId": backup_id, "recoveryType": "FULL"}
    )
    fake_ports.drain()
    _, before = call("GET", f"{BACKUP}/recovery/status/{initiated['recoveryId']}")
    fake_ports.store.update("recovery", initiated["recoveryId"], {"plan": initiated["recoveryPlan"]})
    status, after = call("GET", f"{BACKUP}/recovery/status/{initiated['recoveryId']}")
    assert status == 200 and after == before and after["dataIntegrityResults"], after
