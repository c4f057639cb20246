"""The locks domain's platform schedule: every minute, capture the blocking chains of every
running server into the history store, scan their logs for deadlocks, lock timeouts and long
waits, and run auto-resolve for the tenants that enabled it."""

from __future__ import annotations

from typing import Any

from pgfleet.core.context import Ports
from pgfleet.domains import servers
from pgfleet.domains.locks import deadlock_scan, service
from pgfleet.ports.scheduler import Schedule

CAPTURE_TASK = "locks"
CAPTURE_SCHEDULE = Schedule(
    name="pgfleet-locks-capture", expression="rate(1 minute)", payload={"task": CAPTURE_TASK}
)


def capture(ports: Ports, found: list[service.Target]) -> dict[str, Any]:
    """A capture and the log scan of the same servers (POST /locks/capture and the schedule)."""
    return service.capture(ports, found, detect=deadlock_scan.detect)


def scheduled_capture(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """The platform schedule: capture every running server; then, for every tenant whose
    auto-resolve is enabled, resolve what its configuration allows."""
    found = [service.Target(s) for s in servers.all_servers(ports) if s.record.get("status") == "running"]
    result = capture(ports, found)
    actions = [f"captured {len(result['targets_captured'])} server(s): {result['locks_captured']} lock(s), "
               f"{result['blocking_locks']} root blocker(s), {result['deadlocks_detected']} new deadlock(s)"]  # fmt: skip
    by_tenant: dict[str, list[service.Target]] = {}
    for t in found:
        by_tenant.setdefault(t.tenant_id, []).append(t)
    for tenant, tenant_targets in sorted(by_tenant.items()):
        config = service.config_of(ports, tenant)
        if not config["enabled"]:
            continue
        blocked = {s["target_id"] for s in result["snapshots"] if s["blocking_sessions"]}
        with_blocking = [t for t in tenant_targets if t.target_id in blocked]
        if not with_blocking:
            continue
        outcome = service.auto_resolve(ports, with_blocking, config, dry_run=False, actor="system")
        actions.append(
            f"auto-resolve {tenant}: {outcome['sessions_terminated']} terminated of {outcome['actions_planned']} planned"
        )
    return actions
