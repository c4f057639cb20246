"""`GET /api/v1/monitoring/health`: the seed's SystemHealthResponse, from the captured samples
and a few round trips to the control plane's own dependencies.

- One component per server in scope (`server:<id>`), from its newest sample of the last hour:
  each measured metric with its thresholds (metrics.METRICS) and its trend over the hour
  (least-squares slope against the metric's good direction; STABLE under 5 % of its mean).
  The component's status is its worst metric's (a server that did not answer: CRITICAL); a
  server without a sample in the last hour, or not sampled (stopped, paused), is UNKNOWN.
- The control plane: `queue` (operations waiting for a worker), `metadata` and `history` (a
  read each, with its latency), `scheduler` (the capture schedule is declared and enabled,
  and the newest sample says when it last ran). A token confined to a tenant sees them as one
  `control-plane` component, their worst status without details, as GET /api/health/detailed
  does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.models import utcnow
from pgfleet.domains.monitoring import capture, metrics
from pgfleet.domains.monitoring.metrics_models import (
    ComponentHealth,
    HealthMetric,
    HealthStatus,
    SystemHealthResponse,
    Threshold,
)
from pgfleet.ports.history import HistoryRecord

WINDOW = timedelta(hours=1)
# What a server component shows, in this order (those its newest sample measured).
HEALTH_METRICS = (
    "up", "connections_used_percent", "cache_hit_ratio", "rollback_ratio", "replication_lag_seconds_max",
    "replication_lag_bytes_max", "xid_remaining", "oldest_xact_age_seconds", "idle_in_transaction_max_seconds",
    "blocking_sessions", "last_backup_age_seconds", "cpu_percent", "memory_bytes",
)  # fmt: skip
SEVERITY: tuple[HealthStatus, ...] = ("HEALTHY", "UNKNOWN", "WARNING", "CRITICAL")
POINT_TO_HEALTH: dict[str | None, HealthStatus] = {
    None: "HEALTHY", "NORMAL": "HEALTHY", "WARNING": "WARNING", "CRITICAL": "CRITICAL",
}  # fmt: skip
# Operations waiting for a worker (as GET /api/health/detailed judges the queue).
QUEUE_WARNING = 100
QUEUE_CRITICAL = 1000
SLOW_MS = 1000.0
# The capture runs every minute: a newest sample older than this says the schedule stalls.
CAPTURE_LATE = timedelta(minutes=3)
CAPTURE_STALLED = timedelta(minutes=10)
PROBE_KIND = "health_probe"
PROBE_ID = "pgfleet-monitoring-probe"


def worst(statuses: list[HealthStatus]) -> HealthStatus:
    return max(statuses, key=SEVERITY.index, default="HEALTHY")


def health_metric(
    name: str, value: float, points: list[tuple[float, float]]
) -> tuple[HealthMetric, HealthStatus]:
    metric = metrics.BY_NAME[name]
    threshold = None
    if metric.warning is not None or metric.critical is not None:
        threshold = Threshold(warning=metric.warning, critical=metric.critical)
    direction, _ = metrics.trend(metric, points, WINDOW.total_seconds())
    found = HealthMetric(
        name=name, value=round(value, 6), unit=metric.unit, threshold=threshold, trend=direction
    )
    return found, POINT_TO_HEALTH[metric.status(value)]


def server_component(target: metrics.Target, samples: list[HistoryRecord]) -> ComponentHealth:
    """A server's health from its samples of the last hour, oldest first."""
    name = f"server:{target.target_id}"
    record = target.server.record
    if not samples:
        why = (
            f"not sampled: it is {record.get('status')}"
            if not capture.sampled(target.server)
            else f"no sample in the last {WINDOW.total_seconds() / 60:.0f} minutes yet"
        )
        return ComponentHealth(component=name, status="UNKNOWN", metrics=[], last_check=metrics.iso(utcnow()),
                               message=why, target_id=target.target_id)  # fmt: skip
    newest = samples[-1]
    found: list[HealthMetric] = []
    statuses: list[HealthStatus] = []
    for metric_name in HEALTH_METRICS:
        metric = metrics.BY_NAME[metric_name]
        value = metric.value(newest.data)
        if value is None:
            continue
        points = [(s.at.timestamp(), v) for s in samples if (v := metric.value(s.data)) is not None]
        health, level = health_metric(metric_name, value, points)
        found.append(health)
        statuses.append(level)
    data = newest.data
    if not data.get("up"):
        message = f"does not answer: {data.get('error') or 'no connection'}"
        status: HealthStatus = "CRITICAL"
    else:
        status = worst(statuses)
        bad = [m.name for m, s in zip(found, statuses, strict=True) if s != "HEALTHY"]
        message = (
            "every measured metric within its thresholds"
            if not bad
            else f"past a threshold: {', '.join(bad)}"
        )
        if data.get("connections_max"):
            message = (
                f"{data['connections_total']} of {data['connections_max']} connections in use; " + message
            )
    return ComponentHealth(component=name, status=status, metrics=found, last_check=metrics.iso(newest.at),
                           message=message, target_id=target.target_id)  # fmt: skip


def _timed(name: str, check: Callable[[], tuple[HealthStatus, str, list[HealthMetric]]]) -> ComponentHealth:
    started = time.perf_counter()
    try:
        status, message, found = check()
    except Exception as exc:  # a dependency that fails is its component's state, not an error
        status, message, found = "CRITICAL", f"{type(exc).__name__}: {exc}"[:500], []
    latency = 1000 * (time.perf_counter() - started)
    found = [*found, _plain("latency", latency, "ms")]
    if status == "HEALTHY" and latency > SLOW_MS:
        status, message = "WARNING", f"{message}; slow: {latency:.0f} ms (WARNING over {SLOW_MS:.0f} ms)"
    return ComponentHealth(component=name, status=status, metrics=found, last_check=metrics.iso(utcnow()),
                           message=message)  # fmt: skip


def _plain(
    name: str, value: float, unit: str, warning: float | None = None, critical: float | None = None
) -> HealthMetric:
    threshold = Threshold(warning=warning, critical=critical) if warning is not None else None
    return HealthMetric(name=name, value=round(value, 3), unit=unit, threshold=threshold, trend="STABLE")


def control_plane(ports: Ports, newest_sample: datetime | None, history_ms: float) -> list[ComponentHealth]:
    def queue() -> tuple[HealthStatus, str, list[HealthMetric]]:
        depth = ports.queue.depth()
        status: HealthStatus = (
            "CRITICAL"
            if depth.waiting >= QUEUE_CRITICAL
            else "WARNING"
            if depth.waiting >= QUEUE_WARNING
            else "HEALTHY"
        )
        return (
            status,
            f"{depth.waiting} operation(s) waiting for a worker, {depth.in_flight} being run",
            [
                _plain("waiting", depth.waiting, "messages", QUEUE_WARNING, QUEUE_CRITICAL),
                _plain("in_flight", depth.in_flight, "messages"),
            ],
        )

    def metadata() -> tuple[HealthStatus, str, list[HealthMetric]]:
        ports.store.get(PROBE_KIND, PROBE_ID)
        return "HEALTHY", "the metadata store answered a consistent read", []

    def history() -> tuple[HealthStatus, str, list[HealthMetric]]:
        # the samples of this answer were read from it: that read is the round trip measured
        status: HealthStatus = "WARNING" if history_ms > SLOW_MS else "HEALTHY"
        return status, f"the history store answered the last hour's samples in {history_ms:.0f} ms", []

    def scheduler() -> tuple[HealthStatus, str, list[HealthMetric]]:
        name = capture.CAPTURE_SCHEDULE.name
        schedule = ports.scheduler.get(name)
        if schedule is None or not schedule.enabled:
            return (
                "WARNING",
                f"the capture schedule {name} is {'missing' if schedule is None else 'disabled'}",
                [],
            )
        if newest_sample is None:
            return "HEALTHY", f"{name} is enabled; no server in scope has been sampled in the last hour", []
        age = utcnow() - newest_sample
        status: HealthStatus = (
            "CRITICAL" if age > CAPTURE_STALLED else "WARNING" if age > CAPTURE_LATE else "HEALTHY"
        )
        return status, f"{name} is enabled; it last sampled {age.total_seconds():.0f} s ago", [
            _plain("last_capture_age", age.total_seconds(), "seconds", CAPTURE_LATE.total_seconds(),
                   CAPTURE_STALLED.total_seconds()),
        ]  # fmt: skip

    checks = {"queue": queue, "metadata": metadata, "history": history, "scheduler": scheduler}
    return [_timed(name, check) for name, check in checks.items()]


def system_health(
    ports: Ports, principal: Principal, target_id: str | None = None, tenant_id: str | None = None
) -> SystemHealthResponse:
    found = metrics.targets(ports, principal, target_id, tenant_id, require_running=False)
    target, tenant = target_id, tenant_scope(principal, tenant_id)
    by_target: dict[str, list[HistoryRecord]] = {}
    end = utcnow()
    started = time.perf_counter()
    metrics.read(ports, target, tenant, end - WINDOW, end + timedelta(seconds=1),
                 lambda r: by_target.setdefault(r.target_id or "-", []).append(r))  # fmt: skip
    history_ms = 1000 * (time.perf_counter() - started)
    newest = max((samples[-1].at for samples in by_target.values()), default=None)
    components = [server_component(t, by_target.get(t.target_id, [])) for t in found]
    plane = control_plane(ports, newest, history_ms)
    if principal.is_platform_admin:
        components = plane + components
    else:
        status = worst([c.status for c in plane])
        message = "every dependency of the control plane answers" if status == "HEALTHY" else (
            f"a dependency of the control plane is {status}: operations may be delayed")  # fmt: skip
        components.insert(0, ComponentHealth(component="control-plane", status=status, metrics=[],
                                             last_check=metrics.iso(utcnow()), message=message))  # fmt: skip
    return SystemHealthResponse(
        overall=worst([c.status for c in components]),
        components=components,
        last_updated=metrics.iso(utcnow()),
    )
