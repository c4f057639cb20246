"""Major-version upgrades of instances and clusters: validation, the pre-flight checks, and the
hand-over to the worker.

Modes (the operation types are `<kind>.upgrade.<mode>`):

- in_place (`in_place`, `cluster_in_place`): pg_upgrade on the servers themselves, a backup
  first, the old data directory kept as the way back until the new server is verified.
- blue_green (`blue_green`): a new server at the target version fed by native logical
  replication, then a cutover of writes onto it at the same host:port.

Before anything changes the checks run (`check`): a failed check is a 409 listing every
finding, and nothing is touched. `dry_run` answers with the report alone.
"""

from __future__ import annotations

from typing import Any

from pgfleet.core import resources
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, ValidationFailed
from pgfleet.domains import instances, servers, tenants
from pgfleet.domains.upgrades import blue_green, cluster_in_place
from pgfleet.domains.upgrades.common import item as _item
from pgfleet.domains.upgrades.common import space_check, workflow_type
from pgfleet.domains.upgrades.models import UpgradeCheckItem, UpgradeRequest


def validate_version(ports: Ports, record: dict[str, Any], target: str, kind: str = instances.KIND) -> None:
    """422 for a version not installed here (listing the installed ones; for a cluster, those
    Patroni can run), the same version, or a downgrade."""
    installed = (
        ports.engine.supported_versions()
        if kind == instances.KIND
        else ports.cluster_engine.supported_versions()
    )
    current = str(record["version"])
    if target not in installed:
        raise ValidationFailed(
            f"PostgreSQL {target} is not installed here; installed: {', '.join(installed)}",
            details={"field": "target_version", "installed": installed},
        )
    if int(target) == int(current):
        raise ValidationFailed(
            f"{record['id']} already runs PostgreSQL {current}",
            details={"field": "target_version", "current_version": current},
        )
    if int(target) < int(current):
        raise ValidationFailed(
            f"downgrades are not possible: {record['id']} runs PostgreSQL {current}, {target} is older",
            details={"field": "target_version", "current_version": current},
        )


def _in_place_single(
    ports: Ports, record: dict[str, Any], target: str
) -> tuple[list[UpgradeCheckItem], bool]:
    data_bytes, free_bytes = ports.engine.upgrade_space(record["id"])
    disk, link = space_check(data_bytes, free_bytes)
    try:
        findings = ports.engine.upgrade_check(record["id"], target, link)
    except EngineError as exc:
        findings = [str(exc)]
    return [
        disk,
        _item("pg_upgrade --check", findings, "pg_upgrade --check passed against the running server"),
    ], link


def check(ports: Ports, kind: str, record: dict[str, Any], body: UpgradeRequest) -> dict[str, Any]:
    """Every pre-flight check of the upgrade `body` asks for; changes nothing."""
    target = body.target_version
    items: list[UpgradeCheckItem] = [
        UpgradeCheckItem(
            name="version", passed=True, detail=f"{record['version']} -> {target}: installed, an upgrade"
        )
    ]
    link: bool | None = None
    if body.mode == "in_place" and kind == instances.KIND:
        found, link = _in_place_single(ports, record, target)
        items += found
    elif body.mode == "in_place":
        found, link = cluster_in_place.checks(ports, record, target)
        items += found
    else:
        items += blue_green.checks(ports, kind, record, target)
    findings = [f"{i.name}: {i.detail}" for i in items if not i.passed]
    return {
        "resource_id": record["id"],
        "kind": kind,
        "from_version": str(record["version"]),
        "target_version": target,
        "mode": body.mode,
        "passed": not findings,
        "link": link,
        "checks": [i.model_dump() for i in items],
        "findings": findings,
    }


def preflight(
    ports: Ports, principal: Principal, kind: str, resource_id: str, body: UpgradeRequest
) -> dict[str, Any]:
    """The report of `check`, after the request itself is validated (404, 409, 422)."""
    server = servers.get_visible(ports, principal, kind, resource_id)
    validate_version(ports, server.record, body.target_version, kind)
    resources.require_status(server.record, server.rtype, "upgrade", ("running",))
    return check(ports, kind, server.record, body)


def upgrade(
    ports: Ports, principal: Principal, kind: str, resource_id: str, body: UpgradeRequest
) -> dict[str, Any]:
    """Validate, check, and hand the upgrade to the worker: 202 with the accepted upgrade, or
    409 with every finding of a failed check (nothing changed)."""
    server = servers.get_visible(ports, principal, kind, resource_id)
    validate_version(ports, server.record, body.target_version, kind)
    resources.require_status(server.record, server.rtype, "upgrade", ("running",))
    tenants.require_no_tenant_operation(ports, server.id)
    report = check(ports, kind, server.record, body)
    if not report["passed"]:
        raise InvalidState(
            f"the upgrade of {resource_id} to PostgreSQL {body.target_version} failed its pre-flight checks: "
            + "; ".join(report["findings"]),
            details={"findings": report["findings"], "checks": report["checks"]},
        )
    record = resources.begin(
        ports, principal, server.rtype, server.record,
        action=f"{body.mode} upgrade to PostgreSQL {body.target_version}",
        transitional="upgrading",
        workflow=workflow_type(kind, body.mode),
        params={
            "from_version": str(server.record["version"]),
            "target_version": body.target_version,
            "mode": body.mode,
            "link": bool(report["link"]),
            "cutover_timeout_seconds": body.cutover_timeout_seconds,
            "keep_old_hours": body.keep_old_hours,
        },
    )  # fmt: skip
    return {**report, "status": record["status"], "operation_id": record["operation_id"]}
