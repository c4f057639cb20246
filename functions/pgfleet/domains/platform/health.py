"""`GET /api/health/detailed`: every dependency checked for real, with its latency.

Each check is a real round trip that changes nothing: a consistent read of a metadata record
and of a secret that never exist, the queue's message counts, the platform's own schedule,
the local engine's programs and free memory and disk, the DCS's `/health`, and a statistics
query on a sample of the managed servers (the first `SAMPLE_SIZE` that should be running).
The checks run side by side and the answer comes within `CHECK_TIMEOUT_S` whatever a
dependency does: one that has not answered by then is CRITICAL. A check that answers but
takes over `SLOW_MS` makes its component WARNING. `overall` is the worst component's status.

Scope. A platform token gets every component: the infrastructure, then the sample of every
tenant's servers. A token confined to a tenant gets the sample of its own servers and one
`api` component, the infrastructure's worst status without its details (the platform's
dependencies are not a tenant's to inspect, but whether the API it calls is degraded is).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import PgfleetError
from pgfleet.core.models import utcnow, utcnow_iso
from pgfleet.domains.platform import fleet, probes
from pgfleet.domains.platform.models import (
    ComponentHealth,
    HealthMetric,
    HealthStatus,
    HealthThreshold,
    SystemHealthResponse,
    worst,
)
from pgfleet.domains.platform.schedules import HISTORY_EXPIRY_SCHEDULE
from pgfleet.domains.servers import MB, Server
from pgfleet.ports.cluster_engine import HEALTHY_LAG_BYTES

CHECK_TIMEOUT_S = 5.0
SAMPLE_SIZE = 5
SLOW_MS = 1000.0
# Operations waiting for a worker: a backlog means the workers fall behind (each operation
# is a few short steps, so a healthy queue is near empty).
QUEUE_WARNING = 100
QUEUE_CRITICAL = 1000
# Share of max_connections in use: past the critical value new clients are about to be refused.
CONNECTIONS_WARNING_PCT = 80.0
CONNECTIONS_CRITICAL_PCT = 95.0
# A metadata record and a secret that never exist: reading them is a round trip to the
# backend that changes nothing.
PROBE_KIND = "health_probe"
PROBE_ID = "pgfleet-health-probe"


@dataclass(frozen=True)
class Finding:
    """What one check found. `component` names it when the check decides its name (the DCS)."""

    status: HealthStatus
    message: str
    metrics: list[HealthMetric] = field(default_factory=list)
    component: str | None = None


def _metric(
    name: str, value: float, unit: str, warning: float | None = None, critical: float | None = None
) -> HealthMetric:
    threshold = HealthThreshold(warning=warning, critical=critical) if warning is not None else None
    return HealthMetric(name=name, value=round(value, 3), unit=unit, threshold=threshold)


def _level(value: float, warning: float, critical: float) -> HealthStatus:
    """The status of a value against its thresholds; lower is worse when warning > critical."""
    if warning > critical:
        return "CRITICAL" if value <= critical else "WARNING" if value <= warning else "HEALTHY"
    return "CRITICAL" if value >= critical else "WARNING" if value >= warning else "HEALTHY"


# --- the infrastructure ---------------------------------------------------------------------------


def check_metadata(ports: Ports) -> Finding:
    ports.store.get(PROBE_KIND, PROBE_ID)
    return Finding("HEALTHY", "the metadata table answered a consistent read")


def check_queue(ports: Ports) -> Finding:
    depth = ports.queue.depth()
    status = _level(depth.waiting, QUEUE_WARNING, QUEUE_CRITICAL)
    message = f"{depth.waiting} operation(s) waiting for a worker, {depth.in_flight} being run"
    if depth.delayed:
        message += f", {depth.delayed} delayed"
    if status != "HEALTHY":
        message += f": the workers fall behind (WARNING from {QUEUE_WARNING} waiting)"
    return Finding(
        status,
        message,
        [
            _metric("waiting", depth.waiting, "messages", QUEUE_WARNING, QUEUE_CRITICAL),
            _metric("in_flight", depth.in_flight, "messages"),
            _metric("delayed", depth.delayed, "messages"),
        ],
    )


def check_secrets(ports: Ports) -> Finding:
    ports.secrets.get(PROBE_ID)
    return Finding("HEALTHY", "the secrets store answered a read")


def check_scheduler(ports: Ports) -> Finding:
    name = HISTORY_EXPIRY_SCHEDULE.name
    found = ports.scheduler.get(name)
    if found is None:
        return Finding("WARNING", f"the scheduler answered, but the platform schedule {name} is missing")
    if not found.enabled:
        return Finding("WARNING", f"the scheduler answered, but the platform schedule {name} is disabled")
    return Finding("HEALTHY", f"the scheduler answered; the platform schedule {name} is enabled")


def check_engine(ports: Ports) -> Finding:
    engine = ports.engine
    versions = engine.supported_versions()
    missing = engine.missing_tools()
    capacity = engine.host_capacity()
    problems = []
    if not versions:
        problems.append("no PostgreSQL version is installed")
    if missing:
        problems.append(f"missing: {', '.join(missing[:10])}")
    status: HealthStatus = "CRITICAL" if problems else "HEALTHY"
    parts = problems or [f"PostgreSQL {', '.join(versions)} installed, every program it runs present"]
    metrics = []
    if capacity is not None:
        memory_floor = float(ports.settings.host_memory_headroom_mb)
        disk_floor = float(ports.settings.host_disk_headroom_gb)
        memory = capacity.memory_available_mb
        disk = capacity.disk_free_gb
        metrics = [
            _metric("memory_available", memory, "MB", 2 * memory_floor, memory_floor),
            _metric("disk_free", disk, "GB", 2 * disk_floor, disk_floor),
        ]
        host = worst(
            [_level(memory, 2 * memory_floor, memory_floor), _level(disk, 2 * disk_floor, disk_floor)]
        )
        status = worst([status, host])
        parts.append(
            f"{memory / 1024:.1f} GB of {capacity.memory_total_mb / 1024:.1f} GB memory and "
            f"{disk:.1f} GB of {capacity.disk_total_gb:.1f} GB disk free"
        )
        if host != "HEALTHY":
            parts.append(
                f"a create is refused when it would leave under {memory_floor:g} MB memory or {disk_floor:g} GB disk"
            )
    return Finding(status, "; ".join(parts), metrics)


def check_dcs(ports: Ports) -> Finding | None:
    dcs = ports.cluster_engine.dcs_status(timeout=min(2.0, CHECK_TIMEOUT_S))
    if dcs is None:
        return None  # an engine without a DCS of its own
    if dcs.healthy:
        return Finding("HEALTHY", dcs.reason, component=dcs.name)
    return Finding(
        "CRITICAL",
        f"{dcs.reason}; cluster primaries cannot renew their leader keys and stop taking writes",
        component=dcs.name,
    )


# --- managed servers ------------------------------------------------------------------------------


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def check_server(ports: Ports, server: Server) -> Finding:
    return server_finding(fleet.observe(ports, server))


def server_finding(seen: fleet.ServerObservation) -> Finding:
    """A server's health from an observation: CRITICAL when its primary does not answer,
    WARNING for a replica that is down, behind or not streaming, or connections nearly used up."""
    what = seen.server.kind
    if not seen.asked:
        return Finding("UNKNOWN", f"not checked: the {what} is {seen.server.record.get('status')}")
    primary = seen.primary
    if primary is None:
        reasons = "; ".join(f"{n.node_id}: {n.reason}" for n in seen.nodes if not n.up)
        return Finding("CRITICAL", f"the {what} has no primary" + (f" ({reasons})" if reasons else ""))
    if not primary.up or primary.stats is None:
        return Finding("CRITICAL", f"{primary.node_id} does not answer: {primary.reason}")
    stats = primary.stats
    usage = 100.0 * stats.connections_total / stats.connections_max if stats.connections_max else 0.0
    metrics = [
        _metric("connections", stats.connections_total, "connections"),
        _metric("connection_usage", usage, "percent", CONNECTIONS_WARNING_PCT, CONNECTIONS_CRITICAL_PCT),
        _metric("database_size", stats.database_size_bytes / MB, "MB"),
    ]
    statuses = [_level(usage, CONNECTIONS_WARNING_PCT, CONNECTIONS_CRITICAL_PCT)]
    parts = [f"accepts connections: {stats.connections_total} of {stats.connections_max} in use"]
    down = [n for n in seen.nodes if not n.is_primary and not n.up]
    if down:
        statuses.append("WARNING")
        parts.append("; ".join(f"node {n.node_id} is down ({n.reason})" for n in down))
    if seen.replicas:
        lag = max(r.lag_bytes for r in seen.replicas)
        metrics.append(_metric("replication_lag", lag, "bytes", HEALTHY_LAG_BYTES))
        behind = [r for r in seen.replicas if not r.healthy]
        if behind:
            statuses.append("WARNING")
            parts.append(
                "; ".join(f"replica {r.name} is {r.state}, {r.lag_bytes} bytes behind" for r in behind)
            )
    if seen.problems:
        statuses.append("WARNING")
        parts.extend(seen.problems)
    if seen.last_backup_at is None:
        parts.append("no completed backup yet")
    else:
        age = (utcnow() - seen.last_backup_at).total_seconds()
        metrics.append(_metric("last_backup_age", age, "seconds"))
        parts.append(f"last backup completed {_age(age)} ago")
    return Finding(worst(statuses), "; ".join(parts), metrics)


# --- the answer -----------------------------------------------------------------------------------


def _component(
    name: str, outcome: probes.Outcome[Finding | None], target_id: str | None
) -> ComponentHealth | None:
    now = utcnow_iso()
    if not outcome.finished:
        return ComponentHealth(
            component=name, status="CRITICAL", latency_ms=None, metrics=[], last_check=now,
            message=f"no answer within {CHECK_TIMEOUT_S:g} s", target_id=target_id,
        )  # fmt: skip
    latency = round(1000 * (outcome.seconds or 0.0), 1)
    if outcome.error is not None:
        error = outcome.error
        text = str(error) if isinstance(error, PgfleetError) else f"{type(error).__name__}: {error}"
        return ComponentHealth(
            component=name, status="CRITICAL", latency_ms=latency, metrics=[], last_check=now,
            message=text[:500], target_id=target_id,
        )  # fmt: skip
    finding = outcome.value
    if finding is None:
        return None
    status, message = finding.status, finding.message
    if latency > SLOW_MS:
        status = worst([status, "WARNING"])
        message += f"; slow: answered in {latency:.0f} ms (WARNING over {SLOW_MS:.0f} ms)"
    return ComponentHealth(
        component=finding.component or name, status=status, latency_ms=latency, message=message,
        metrics=finding.metrics, last_check=now, target_id=target_id,
    )  # fmt: skip


def _api(infrastructure: list[ComponentHealth]) -> ComponentHealth:
    """The infrastructure as one component, for a tenant: its worst status, no details."""
    status = worst([c.status for c in infrastructure])
    latencies = [c.latency_ms for c in infrastructure]
    if status == "HEALTHY":
        message = "every dependency of the API answers"
    else:
        message = f"a dependency of the API is {status}: operations may be delayed or fail"
    return ComponentHealth(
        component="api", status=status, metrics=[], last_check=utcnow_iso(), message=message,
        latency_ms=None if None in latencies else max((x or 0.0 for x in latencies), default=0.0),
    )  # fmt: skip


INFRASTRUCTURE_CHECKS: dict[str, Callable[[Ports], Finding | None]] = {
    "metadata": check_metadata,
    "queue": check_queue,
    "secrets": check_secrets,
    "scheduler": check_scheduler,
    "engine": check_engine,
    "dcs": check_dcs,
}


def detailed(ports: Ports, principal: Principal) -> SystemHealthResponse:
    """Check everything the caller may see (see the module docstring), within CHECK_TIMEOUT_S:
    the sample of servers is listed while the infrastructure is checked, then checked in the
    time that is left."""
    deadline = time.monotonic() + CHECK_TIMEOUT_S
    fleet.build_engines(ports)
    listing = probes.Batch({"servers": functools.partial(fleet.sample, ports, principal, SAMPLE_SIZE)})
    infrastructure = probes.Batch(
        {name: functools.partial(check, ports) for name, check in INFRASTRUCTURE_CHECKS.items()}
    )
    listed = listing.wait(deadline)["servers"]
    targets = listed.value or []
    servers = probes.Batch({s.id: functools.partial(check_server, ports, s) for s in targets})
    infra_outcomes = infrastructure.wait(deadline)
    server_outcomes = servers.wait(deadline)
    seen = [c for name, o in infra_outcomes.items() if (c := _component(name, o, None)) is not None]
    components = seen if principal.is_platform_admin else [_api(seen)]
    if listed.value is None:
        why = str(listed.error) if listed.finished else f"no answer within {CHECK_TIMEOUT_S:g} s"
        components.append(
            ComponentHealth(
                component="servers",
                status="CRITICAL",
                latency_ms=None,
                metrics=[],
                last_check=utcnow_iso(),
                message=f"the servers to check could not be listed: {why}"[:500],
            )  # fmt: skip
        )
    for server in targets:
        found = _component(f"server:{server.id}", server_outcomes[server.id], server.id)
        if found is not None:
            components.append(found)
    return SystemHealthResponse(
        overall=worst([c.status for c in components]), components=components, last_updated=utcnow_iso()
    )
