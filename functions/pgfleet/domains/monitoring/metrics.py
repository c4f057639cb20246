"""`GET /api/v1/monitoring/metrics`: the captured samples (history stream `metrics`) as
series, one per server and metric, aggregated per MINUTE, HOUR or DAY (UTC buckets from the
epoch): the mean of the bucket's samples, the maximum for lags and blockers. A point's status
comes from the metric's thresholds; METRICS is the one table of them, read by the health and
the dashboard as well.

The range is read in one pass (`visit`) whatever its length: for one server from its hour
chunks (one record an hour, written by the capture) and the samples of the hours without one;
for a tenant or the fleet from the samples. A range reaching past the samples' retention is a
422, and so is an aggregation of more than MAX_POINTS buckets a series.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import tenant_settings, time_range
from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import ValidationFailed
from pgfleet.domains import servers
from pgfleet.domains.monitoring.metrics_models import (
    Category,
    MetricsResponse,
    PointStatus,
    Trend,
)
from pgfleet.domains.monitoring.samples import STREAM
from pgfleet.ports.cluster_engine import HEALTHY_LAG_BYTES
from pgfleet.ports.history import DEFAULT_TTL_SECONDS, HistoryRecord

# Samples are kept as long as lock captures (30 days); older ranges are a 422. A tenant may keep
# its own for less (section MONITORING of the system configuration, `metricRetentionDays`).
SAMPLE_TTL_SECONDS = DEFAULT_TTL_SECONDS
HISTORY_MAX_AGE = timedelta(seconds=SAMPLE_TTL_SECONDS)
RETENTION_DAYS = SAMPLE_TTL_SECONDS // 86400
XID_LIMIT = 2**31 - 1
# Hour chunks: once an hour has passed, its samples' metric values are also kept as one record
# per server (stream HOUR_STREAM, `at` the hour's start, id HOUR_ID), so that a day of one
# server is 24 reads, not 1,440 (a store answers per record returned). Samples stay the truth:
# an hour without its chunk is read from the samples.
HOUR_STREAM = "metrics_hour"
HOUR_ID = "hour"
HOUR = 3600
DEFAULT_RANGE = timedelta(hours=1)
BUCKET_SECONDS = {"MINUTE": 60, "HOUR": 3600, "DAY": 86400}
MAX_POINTS = 7 * 1440  # a week of minutes per series
# A change under this share of the metric's mean over the range is STABLE (health, dashboard).
STABLE_PERCENT = 5.0


def _connections_used(data: dict[str, Any]) -> float | None:
    total, most = data.get("connections_total"), data.get("connections_max")
    return None if total is None or not most else round(100.0 * total / most, 3)


def _up(data: dict[str, Any]) -> float | None:
    return None if data.get("up") is None else float(bool(data["up"]))


@dataclass(frozen=True)
class Metric:
    """One metric of the samples. `warning`/`critical` are where it turns WARNING/CRITICAL:
    higher is worse unless `worse` is "lower". `worse` None: neither direction is bad (a
    throughput), so no threshold and no trend judgement. `peak`: buckets keep the maximum."""

    name: str
    category: Category
    unit: str
    worse: str | None = None  # "higher" | "lower" | None
    warning: float | None = None
    critical: float | None = None
    peak: bool = False
    read: Callable[[dict[str, Any]], float | None] | None = None  # default: data[name]

    def value(self, data: dict[str, Any]) -> float | None:
        raw = self.read(data) if self.read else data.get(self.name)
        return None if raw is None or isinstance(raw, bool | str) else float(raw)

    def status(self, value: float) -> PointStatus | None:
        """NORMAL, WARNING or CRITICAL for a value; None for a metric without thresholds."""
        if self.warning is None and self.critical is None:
            return None
        if self.worse == "lower":
            if self.critical is not None and value < self.critical:
                return "CRITICAL"
            return "WARNING" if self.warning is not None and value < self.warning else "NORMAL"
        if self.critical is not None and value >= self.critical:
            return "CRITICAL"
        return "WARNING" if self.warning is not None and value >= self.warning else "NORMAL"


H = 3600.0
# The thresholds, one row each, with where the default comes from.
METRICS: tuple[Metric, ...] = (
    # --- PERFORMANCE ---
    Metric("commits_per_second", "PERFORMANCE", "transactions/s"),
    Metric("rollbacks_per_second", "PERFORMANCE", "transactions/s"),
    # awesome-prometheus-alerts "PostgresqlHighRollbackRate" warns from 2 %; 10 % here: drivers
    # that roll back read-only transactions make a few percent normal.
    Metric("rollback_ratio", "PERFORMANCE", "ratio", "higher", 0.10),
    # postgres_exporter mixin "PostgreSQLCacheHitRatio" (< 98 %); PgHero shows a cache hit rate
    # below 99 % as low; under 90 % most reads go to disk.
    Metric("cache_hit_ratio", "PERFORMANCE", "ratio", "lower", 0.98, 0.90),
    Metric("temp_bytes_per_second", "PERFORMANCE", "bytes/s", "higher"),
    # awesome-prometheus-alerts "PostgresqlDeadLocks": more than 5 deadlocks a minute.
    Metric("deadlocks_per_minute", "PERFORMANCE", "deadlocks/min", "higher", 5.0, peak=True),
    Metric("wal_bytes_per_second", "PERFORMANCE", "bytes/s"),
    # PostgreSQL's checkpoint_warning (30 s): checkpoints closer together are "too frequent".
    Metric("checkpoints_per_minute", "PERFORMANCE", "checkpoints/min", "higher", 2.0),
    Metric("cpu_percent", "PERFORMANCE", "percent of one CPU", "higher"),
    Metric("memory_bytes", "PERFORMANCE", "bytes", "higher"),
    Metric("database_size_bytes", "PERFORMANCE", "bytes"),
    Metric("connections_active", "PERFORMANCE", "connections"),
    # PgHero's long-running query threshold (long_running_query_sec: 60); an hour holds vacuum back.
    Metric("oldest_xact_age_seconds", "PERFORMANCE", "seconds", "higher", 60.0, 3600.0, peak=True),
    Metric("idle_in_transaction_max_seconds", "PERFORMANCE", "seconds", "higher", 60.0, 600.0, peak=True),
    # pganalyze's blocking alert: 3 or more sessions (as the locks domain's severity).
    Metric("blocking_sessions", "PERFORMANCE", "sessions", "higher", 1.0, 3.0, peak=True),
    # --- AVAILABILITY ---
    # 1 when the server accepted a connection; a bucket's mean is its availability.
    Metric("up", "AVAILABILITY", "boolean", "lower", 1.0, 0.5, read=_up),
    # postgres_exporter mixin "PostgreSQLHighConnections" (80 %); 95 %: new clients about to be
    # refused (the same bounds as GET /api/health/detailed).
    Metric("connections_used_percent", "AVAILABILITY", "percent", "higher", 80.0, 95.0, read=_connections_used),
    Metric("connections_total", "AVAILABILITY", "connections"),
    # awesome-prometheus-alerts "PostgresqlReplicationLag" (30 s); 5 minutes: a failover would lose them.
    Metric("replication_lag_seconds_max", "AVAILABILITY", "seconds", "higher", 30.0, 300.0, peak=True),
    # HEALTHY_LAG_BYTES: what the cluster engine calls a healthy replica (1 MiB); 1 GiB critical.
    Metric("replication_lag_bytes_max", "AVAILABILITY", "bytes", "higher", float(HEALTHY_LAG_BYTES), 2.0**30, peak=True),
    # Crunchy pgMonitor "PGXIDWraparound": warning at 50 % of the XID space used, critical at 75 %.
    Metric("xid_remaining", "AVAILABILITY", "transactions", "lower", 0.50 * XID_LIMIT, 0.25 * XID_LIMIT),
    Metric("timeline", "AVAILABILITY", "timeline", peak=True),
    # --- COMPLIANCE ---
    # A daily backup schedule with 2 hours of slack; two missed days critical.
    Metric("last_backup_age_seconds", "COMPLIANCE", "seconds", "higher", 26 * H, 48 * H, peak=True),
)  # fmt: skip
BY_NAME = {m.name: m for m in METRICS}
# SECURITY: the samples measure nothing of security (the security domain has its own
# evidence); a SECURITY query answers with no series.


def bucket_start(epoch: float, size: int) -> int:
    return int(epoch // size) * size


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _iso_epoch(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def aggregation_for(span: time_range.TimeRange, aggregation: str | None) -> str:
    """The aggregation asked for, or the finest that keeps a series within MAX_POINTS."""
    seconds = (span.end - span.start).total_seconds()
    if aggregation is None:
        aggregation = next(a for a in ("MINUTE", "HOUR", "DAY") if seconds / BUCKET_SECONDS[a] <= MAX_POINTS)
    if seconds / BUCKET_SECONDS[aggregation] > MAX_POINTS:
        raise ValidationFailed(
            f"{aggregation} aggregation of {seconds / 86400:.1f} days is more than {MAX_POINTS} points a "
            "series: ask for a coarser aggregation or a shorter timeRange",
            details={"field": "aggregation"},
        )
    return aggregation


def parse_range(text: str | None, default: timedelta = DEFAULT_RANGE) -> time_range.TimeRange:
    return time_range.parse(text, default=default, max_age=HISTORY_MAX_AGE)


# --- scope (seed 003: targetId, tenantId, or every server the caller may see) --------------------

Target = servers.Target


def targets(
    ports: Ports,
    principal: Principal,
    target_id: str | None,
    tenant_id: str | None,
    *,
    require_running: bool = True,
) -> list[Target]:
    """The servers of a call (servers.targets): a cluster is its primary."""
    return servers.targets(ports, principal, target_id, tenant_id, require_running=require_running,
                           what="it (live)")  # fmt: skip


def scope_of(
    ports: Ports, principal: Principal, target_id: str | None, tenant_id: str | None
) -> tuple[str | None, str | None]:
    """(target, tenant) to read the history of: an explicit target must be visible, a tenant
    the caller's (any for a platform admin)."""
    tenant = tenant_scope(principal, tenant_id)
    if target_id is not None:
        targets(ports, principal, target_id, tenant_id, require_running=False)
    return target_id, tenant


def read(
    ports: Ports,
    target_id: str | None,
    tenant: str | None,
    start: datetime,
    end: datetime,
    visit: Callable[[HistoryRecord], None],
) -> None:
    """Visit every sample of the scope in [start, end), oldest first, in one pass."""
    ports.history.query(
        STREAM, start=start, end=end, target_id=target_id, tenant_id=tenant, page_size=1,
        newest_first=False, visit=visit,
    )  # fmt: skip


def retention_days(ports: Ports, tenant_id: str | None) -> int:
    """How many days the tenant's samples and hour chunks are kept (the history store's TTL,
    set when each is written; the cleanup of monitoring history purges past it too)."""
    return int(tenant_settings.value(ports, tenant_id, "monitoring", "metric_retention_days", RETENTION_DAYS))


def hour_chunk(
    target_id: str, tenant_id: str | None, hour: int, samples: Iterable[HistoryRecord],
    ttl_seconds: int = SAMPLE_TTL_SECONDS,
) -> HistoryRecord:  # fmt: skip
    """The hour chunk of one server: every metric's (epoch, value) points of its samples."""
    values: dict[str, list[list[float]]] = {}
    count = 0
    for record in samples:
        count += 1
        at = round(record.at.timestamp(), 3)
        for metric in METRICS:
            value = metric.value(record.data)
            if value is not None and not math.isnan(value):
                values.setdefault(metric.name, []).append([at, value])
    return HistoryRecord(
        stream=HOUR_STREAM, target_id=target_id, tenant_id=tenant_id, at=datetime.fromtimestamp(hour, UTC),
        data={"samples": count, "values": values}, ttl_seconds=ttl_seconds, id=HOUR_ID,
    )  # fmt: skip


def write_hour_chunk(ports: Ports, target_id: str, tenant_id: str | None, hour: int) -> int:
    """Read the server's samples of the hour starting at `hour` (epoch) and store their chunk
    (replacing one written before: same key). Returns how many samples it holds."""
    samples: list[HistoryRecord] = []
    start = datetime.fromtimestamp(hour, UTC)
    read(ports, target_id, None, start, start + timedelta(seconds=HOUR), samples.append)
    if samples:
        ttl = retention_days(ports, tenant_id) * 86400
        ports.history.append(HOUR_STREAM, [hour_chunk(target_id, tenant_id, hour, samples, ttl)])
    return len(samples)


def read_series(
    ports: Ports, buckets: Buckets, target_id: str | None, tenant: str | None, start: datetime, end: datetime
) -> None:
    """Every point of the scope in [start, end) into `buckets`. One server's range is read from
    its hour chunks, and from its samples for the hours without one (the current hour); a tenant
    or the fleet is read from the samples, in one pass."""
    if target_id is None:
        read(ports, None, tenant, start, end, buckets.add)
        return
    low, high = start.timestamp(), end.timestamp()
    covered: set[int] = set()

    def chunk(record: HistoryRecord) -> None:
        covered.add(int(record.at.timestamp()))
        buckets.add_chunk(record, low, high)

    first = bucket_start(low, HOUR)
    ports.history.query(
        HOUR_STREAM, start=datetime.fromtimestamp(first, UTC), end=end, target_id=target_id, tenant_id=tenant,
        page_size=1, newest_first=False, visit=chunk,
    )  # fmt: skip
    hour, span_start = first, None
    while hour < high:  # contiguous hours without a chunk: one read of samples each
        if hour not in covered and span_start is None:
            span_start = hour
        if hour in covered and span_start is not None:
            _samples_between(ports, buckets, target_id, tenant, max(low, span_start), hour)
            span_start = None
        hour += HOUR
    if span_start is not None:
        _samples_between(ports, buckets, target_id, tenant, max(low, span_start), high)


def _samples_between(
    ports: Ports, buckets: Buckets, target_id: str, tenant: str | None, low: float, high: float
) -> None:
    read(
        ports,
        target_id,
        tenant,
        datetime.fromtimestamp(low, UTC),
        datetime.fromtimestamp(high, UTC),
        buckets.add,
    )


class Buckets:
    """Per (target, metric), per bucket: the sum and count of the values (or their max)."""

    def __init__(self, metrics: Sequence[Metric], size: int) -> None:
        self.metrics = metrics
        self.size = size
        self.cells: dict[tuple[str, str], dict[int, list[float]]] = {}

    def add(self, record: HistoryRecord) -> None:
        """Every metric of one sample."""
        at = record.at.timestamp()
        target = record.target_id or "-"
        for metric in self.metrics:
            value = metric.value(record.data)
            if value is not None:
                self.point(target, metric, at, value)

    def point(self, target: str, metric: Metric, at: float, value: float) -> None:
        if math.isnan(value):
            return
        bucket = bucket_start(at, self.size)
        cells = self.cells.setdefault((target, metric.name), {})
        cell = cells.get(bucket)
        if cell is None:
            cells[bucket] = [value, 1.0]
        elif metric.peak:
            cell[0] = max(cell[0], value)
        else:
            cell[0] += value
            cell[1] += 1

    def add_chunk(self, record: HistoryRecord, start: float, end: float) -> None:
        """The points of an hour chunk that fall in [start, end)."""
        target = record.target_id or "-"
        for name, points in record.data.get("values", {}).items():
            metric = BY_NAME.get(name)
            if metric is None or metric not in self.metrics:
                continue
            for at, value in points:
                if start <= at < end:
                    self.point(target, metric, at, value)

    def series(self) -> list[dict[str, Any]]:
        """The series as snake_case documents (validated once, as a whole, by the response)."""
        found = []
        stamps: dict[int, str] = {}  # one timestamp string per bucket, shared by every series
        for (target, name), buckets in sorted(self.cells.items()):
            metric = BY_NAME[name]
            points = []
            for bucket in sorted(buckets):
                total, count = buckets[bucket]
                value = round(total if metric.peak else total / count, 6)
                stamp = stamps.get(bucket) or stamps.setdefault(bucket, _iso_epoch(bucket))
                points.append({"timestamp": stamp, "value": value, "status": metric.status(value)})
            found.append(
                {"name": name, "category": metric.category, "unit": metric.unit, "target_id": target,
                 "data_points": points}
            )  # fmt: skip
        return found


def metric_series(
    ports: Ports,
    principal: Principal,
    *,
    target_id: str | None,
    tenant_id: str | None,
    category: str | None,
    time_range_text: str | None,
    aggregation: str | None,
) -> MetricsResponse:
    span = parse_range(time_range_text)
    chosen = aggregation_for(span, aggregation)
    target, tenant = scope_of(ports, principal, target_id, tenant_id)
    wanted = [m for m in METRICS if category is None or m.category == category]
    buckets = Buckets(wanted, BUCKET_SECONDS[chosen])
    if wanted:
        read_series(ports, buckets, target, tenant, span.start, span.end)
    # one validation of the whole answer (pydantic-core walks the points, not Python)
    return MetricsResponse.model_validate({
        "metrics": buckets.series(),
        "time_range": {"start": iso(span.start), "end": iso(span.end)},
        "aggregation": chosen,
    })  # fmt: skip


# --- trends (health and dashboard) ---------------------------------------------------------------


def slope_change(points: Iterable[tuple[float, float]], span_seconds: float) -> tuple[float, float] | None:
    """(least-squares change of the value over `span_seconds`, mean) of (epoch, value) points;
    None with fewer than two points or no spread in time."""
    xs, ys = [], []
    for x, y in points:
        xs.append(x)
        ys.append(y)
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope * span_seconds, my


def trend(
    metric: Metric, points: Sequence[tuple[float, float]], span_seconds: float
) -> tuple[Trend, float | None]:
    """(IMPROVING | STABLE | DEGRADING, change in percent of the mean) over the span, against
    the metric's good direction. STABLE under STABLE_PERCENT, for a metric without a good
    direction, and without two points to draw a line through."""
    fitted = slope_change(points, span_seconds)
    if fitted is None:
        return "STABLE", None
    change, mean = fitted
    if mean != 0:
        percent = round(100.0 * change / abs(mean), 2)
    else:
        percent = 0.0 if change == 0 else math.copysign(100.0, change)
    if metric.worse is None or abs(percent) < STABLE_PERCENT:
        return "STABLE", percent
    rising_is_bad = metric.worse == "higher"
    return ("DEGRADING" if (change > 0) == rising_is_bad else "IMPROVING"), percent
