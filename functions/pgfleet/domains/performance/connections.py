"""`GET /api/v1/performance/connections/analysis`: the seed's ConnectionAnalysisResponse for the
servers in scope (running ones: the sessions are read live from pg_stat_activity).

- `currentStatus`: the client backends now (the analysis' own session left out), by state,
  database, user and application, against max_connections less the reserved slots.
- `utilization`: now, and the peak and mean over `timeRange` (default a day) from the
  monitoring samples (history stream `metrics`, one per server and minute: keys
  connections_total/active/idle/idle_in_transaction/max, idle_in_transaction_max_seconds).
- `historicalTrends`: those samples per MINUTE (ranges up to 3 h), HOUR (up to 7 days) or DAY.
  No samples: no trend, and a note says so.
- `recommendations`: RULES below, each with the numbers it was applied to. A rule whose
  numbers were not measured is not applied.

RULES (first match of the first three; OPTIMIZE_QUERIES independently):

| type | when | recommended value |
|---|---|---|
| CONFIGURE_POOLER | peak utilization > 80 % of usable and idle connections > 50 % of all (mean of the samples) | pool size: peak active x 1.25 (PgBouncer transaction pooling) |
| INCREASE_POOL | peak utilization > 80 % | max_connections putting the peak at 70 %, if memory allows one connection per 10 MB (the engine's sizing rule); else CONFIGURE_POOLER |
| DECREASE_POOL | peak < 20 % of max_connections, samples covering at least a day (23.5 h), max_connections > 100 | max(100, 2 x peak + reserved slots) |
| OPTIMIZE_QUERIES | a session idle in transaction for 60 s or more, now or in the samples (monitoring's warning) | 0 such sessions |

DECREASE_POOL's memory: each max_connections slot reserves a little shared memory (its PGPROC
and lock-table share, tens of kB); what lowering it really bounds is the worst case of
work_mem per connection (one sort or hash each), so the estimate given is
(current - recommended) x work_mem, named as a worst-case bound, not memory freed now.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic.alias_generators import to_camel

from pgfleet.core import time_range
from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError
from pgfleet.domains import servers
from pgfleet.domains.performance import sql_connections as q
from pgfleet.domains.performance.connections_models import (
    ConnectionAnalysisResponse,
    ConnectionCount,
    ConnectionPoolStatus,
    ConnectionRecommendation,
    ConnectionTrend,
    ConnectionUtilization,
    TimeRange,
)
from pgfleet.ports.history import DEFAULT_TTL_SECONDS, HistoryRecord

log = logging.getLogger(__name__)

# The monitoring capture's history stream (pgfleet.domains.monitoring.samples.STREAM: the
# monitoring domain exports no reader of it).
SAMPLES_STREAM = "metrics"
DEFAULT_RANGE = timedelta(days=1)
MAX_AGE = timedelta(seconds=DEFAULT_TTL_SECONDS)  # the samples' retention

HIGH_PEAK_PERCENT = 80.0
INCREASE_TARGET_PERCENT = 70.0
IDLE_SHARE_FOR_POOLER = 50.0
POOL_HEADROOM = 1.25
MB_PER_CONNECTION = 10  # adapters' tuning.max_connections_for: one connection per 10 MB
LOW_PEAK_PERCENT = 20.0
DECREASE_MIN_MAX_CONNECTIONS = 100
DECREASE_MIN_COVERAGE_SECONDS = 23.5 * 3600
IDLE_IN_TRANSACTION_SECONDS = 60.0
BREAKDOWN_LIMIT = 20
CONNECTION_SETTINGS = [
    "max_connections", "superuser_reserved_connections", "reserved_connections", "work_mem",
    "idle_in_transaction_session_timeout",
]  # fmt: skip

_UNIT = re.compile(r"^(\d*)(B|kB|MB|GB|TB)$")
_UNIT_BYTES = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def setting_bytes(setting: str | None, unit: str | None) -> int | None:
    """A pg_settings value in bytes ("16384", "8kB" -> 134217728); None when not a size."""
    if setting is None or unit is None:
        return None
    match = _UNIT.match(unit)
    if not match:
        return None
    return int(setting) * int(match[1] or 1) * _UNIT_BYTES[match[2]]


@dataclass(frozen=True)
class Session:
    database: str
    user: str
    application: str
    state: str
    waiting: bool
    age_seconds: float
    idle_in_transaction_seconds: float | None


def _breakdown(sessions: Sequence[Session], key: str) -> list[ConnectionCount]:
    groups: dict[str, list[Session]] = {}
    for s in sessions:
        groups.setdefault(getattr(s, key), []).append(s)
    found = [
        ConnectionCount(
            name=name,
            connections=len(group),
            active=sum(s.state == "active" for s in group),
            idle=sum(s.state == "idle" for s in group),
            idle_in_transaction=sum(s.idle_in_transaction_seconds is not None for s in group),
        )  # fmt: skip
        for name, group in groups.items()
    ]
    return sorted(found, key=lambda c: (-c.connections, c.name))[:BREAKDOWN_LIMIT]


def usable(max_connections: int, superuser_reserved: int, reserved: int) -> int:
    return max(1, max_connections - superuser_reserved - reserved)


def status_of(
    sessions: Sequence[Session], settings: dict[str, int], target_id: str | None
) -> ConnectionPoolStatus:
    """The current status of one server from its client sessions and settings."""
    most, su, reserved = (
        settings["max_connections"],
        settings["superuser_reserved_connections"],
        settings["reserved_connections"],
    )
    room = usable(most, su, reserved)
    idle_xact = [s.idle_in_transaction_seconds for s in sessions if s.idle_in_transaction_seconds is not None]
    return ConnectionPoolStatus(
        max_connections=most, current_connections=len(sessions),
        active_connections=sum(s.state == "active" for s in sessions),
        idle_connections=sum(s.state == "idle" for s in sessions),
        waiting_connections=sum(s.waiting for s in sessions),
        utilization_percentage=round(100.0 * len(sessions) / room, 2),
        idle_in_transaction_connections=len(idle_xact), superuser_reserved_connections=su,
        reserved_connections=reserved, usable_connections=room,
        oldest_connection_age_seconds=round(max(s.age_seconds for s in sessions), 3) if sessions else None,
        oldest_idle_in_transaction_seconds=round(max(idle_xact), 3) if idle_xact else None,
        by_database=_breakdown(sessions, "database"), by_user=_breakdown(sessions, "user"),
        by_application=_breakdown(sessions, "application"), target_id=target_id,
    )  # fmt: skip


def total_of(statuses: Sequence[ConnectionPoolStatus]) -> ConnectionPoolStatus:
    """The sum of several servers' statuses (breakdowns merged by name)."""
    if len(statuses) == 1:
        return statuses[0]

    def merged(attr: str) -> list[ConnectionCount]:
        sums: dict[str, list[int]] = {}
        for status in statuses:
            for c in getattr(status, attr):
                cell = sums.setdefault(c.name, [0, 0, 0, 0])
                for i, v in enumerate((c.connections, c.active, c.idle, c.idle_in_transaction)):
                    cell[i] += v
        found = [ConnectionCount(name=n, connections=a, active=b, idle=c, idle_in_transaction=d)
                 for n, (a, b, c, d) in sums.items()]  # fmt: skip
        return sorted(found, key=lambda c: (-c.connections, c.name))[:BREAKDOWN_LIMIT]

    def summed(attr: str) -> int:
        return sum(int(getattr(s, attr)) for s in statuses)

    def oldest(attr: str) -> float | None:
        values = [getattr(s, attr) for s in statuses if getattr(s, attr) is not None]
        return max(values) if values else None

    room = summed("usable_connections")
    return ConnectionPoolStatus(
        max_connections=summed("max_connections"), current_connections=summed("current_connections"),
        active_connections=summed("active_connections"), idle_connections=summed("idle_connections"),
        waiting_connections=summed("waiting_connections"),
        utilization_percentage=round(100.0 * summed("current_connections") / room, 2) if room else 0.0,
        idle_in_transaction_connections=summed("idle_in_transaction_connections"),
        superuser_reserved_connections=summed("superuser_reserved_connections"),
        reserved_connections=summed("reserved_connections"), usable_connections=room,
        oldest_connection_age_seconds=oldest("oldest_connection_age_seconds"),
        oldest_idle_in_transaction_seconds=oldest("oldest_idle_in_transaction_seconds"),
        by_database=merged("by_database"), by_user=merged("by_user"), by_application=merged("by_application"),
    )  # fmt: skip


# --- the samples ----------------------------------------------------------------------------------


def _int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    return None if value is None or isinstance(value, bool) else int(value)


@dataclass(frozen=True)
class SampleStats:
    """What the range's samples of one server say about its connections."""

    samples: int = 0
    covered_seconds: float = 0.0
    peak_total: int | None = None
    average_total: float | None = None
    peak_active: int | None = None
    idle_share_percent: float | None = None
    max_connections: int | None = None  # the highest connections_max sampled
    idle_in_transaction_max_seconds: float | None = None


def sample_stats(samples: Sequence[HistoryRecord]) -> SampleStats:
    totals = [(r, t) for r in samples if (t := _int(r.data, "connections_total")) is not None]
    if not totals:
        return SampleStats(samples=len(samples))
    actives = [a for r, _ in totals if (a := _int(r.data, "connections_active")) is not None]
    shares = [
        100.0 * i / t for r, t in totals if t > 0 and (i := _int(r.data, "connections_idle")) is not None
    ]
    maxes = [m for r, _ in totals if (m := _int(r.data, "connections_max"))]
    waits = [float(w) for r in samples if (w := r.data.get("idle_in_transaction_max_seconds")) is not None]
    return SampleStats(
        samples=len(totals),
        covered_seconds=(totals[-1][0].at - totals[0][0].at).total_seconds(),
        peak_total=max(t for _, t in totals),
        average_total=sum(t for _, t in totals) / len(totals),
        peak_active=max(actives) if actives else None,
        idle_share_percent=sum(shares) / len(shares) if shares else None,
        max_connections=max(maxes) if maxes else None,
        idle_in_transaction_max_seconds=max(waits) if waits else None,
    )


def utilization_of(target_id: str, status: ConnectionPoolStatus, stats: SampleStats) -> ConnectionUtilization:
    reserved = status.superuser_reserved_connections + status.reserved_connections
    room = usable(stats.max_connections, reserved, 0) if stats.max_connections else status.usable_connections

    def percent(value: float | None) -> float | None:
        return None if value is None else round(100.0 * value / room, 2)

    return ConnectionUtilization(
        target_id=target_id, current_percentage=status.utilization_percentage,
        peak_percentage=percent(stats.peak_total), average_percentage=percent(stats.average_total),
        peak_connections=stats.peak_total,
        average_connections=None if stats.average_total is None else round(stats.average_total, 2),
        peak_active_connections=stats.peak_active,
        idle_share_percentage=None if stats.idle_share_percent is None else round(stats.idle_share_percent, 2),
        samples=stats.samples, covered_seconds=round(stats.covered_seconds, 3),
    )  # fmt: skip


# --- the rules ------------------------------------------------------------------------------------


def recommend(
    target_id: str,
    status: ConnectionPoolStatus,
    util: ConnectionUtilization,
    stats: SampleStats,
    *,
    memory_mb: int | None,
    work_mem_bytes: int | None,
    idle_in_transaction_timeout_ms: int | None = None,
) -> list[ConnectionRecommendation]:
    """The RULES of the module docstring, applied to measured numbers only."""
    found: list[ConnectionRecommendation] = []
    most = status.max_connections
    reserved = status.superuser_reserved_connections + status.reserved_connections
    peak, idle_share = util.peak_percentage, util.idle_share_percentage

    def add(
        kind: str, current: float, recommended: float, reasoning: str, impact: str, **evidence: Any
    ) -> None:
        evidence = {"samples": stats.samples, "covered_seconds": round(stats.covered_seconds, 1), **evidence}
        found.append(ConnectionRecommendation(
            type=kind, current_value=current, recommended_value=recommended, reasoning=reasoning,  # type: ignore[arg-type]
            estimated_impact=impact, target_id=target_id, evidence={to_camel(k): v for k, v in evidence.items()},
        ))  # fmt: skip

    def pooler(why: str) -> None:
        pool = math.ceil(max(stats.peak_active or 1, 1) * POOL_HEADROOM)
        add(
            "CONFIGURE_POOLER", most, pool,
            f"{why}; a PgBouncer in transaction mode in front of it with default_pool_size {pool} (the peak of "
            f"{stats.peak_active} active connections x {POOL_HEADROOM}) serves the same clients with {pool} server "
            "connections",
            f"server connections from a peak of {stats.peak_total} to about {pool}; clients queue in the pooler "
            "instead of being refused",
            peak_utilization_percentage=peak, idle_share_percentage=idle_share, peak_connections=stats.peak_total,
            peak_active_connections=stats.peak_active, max_connections=most,
        )  # fmt: skip

    if peak is not None and stats.peak_total is not None and peak > HIGH_PEAK_PERCENT:
        if idle_share is not None and idle_share > IDLE_SHARE_FOR_POOLER:
            pooler(
                f"the peak used {peak:.1f}% of the {status.usable_connections} usable connections while "
                f"{idle_share:.1f}% of the connections were idle on average"
            )
        else:
            wanted = math.ceil(100.0 * stats.peak_total / INCREASE_TARGET_PERCENT) + reserved
            affordable = memory_mb // MB_PER_CONNECTION if memory_mb else None
            if affordable is not None and wanted > affordable:
                pooler(
                    f"the peak used {peak:.1f}% of the usable connections, and {wanted} connections need more than "
                    f"the {memory_mb} MB of memory allow (one per {MB_PER_CONNECTION} MB: at most {affordable})"
                )
            else:
                add(
                    "INCREASE_POOL", most, wanted,
                    f"the peak of {stats.peak_total} connections used {peak:.1f}% of the {status.usable_connections} "
                    f"usable (over {HIGH_PEAK_PERCENT:.0f}%); max_connections {wanted} puts that peak at "
                    f"{INCREASE_TARGET_PERCENT:.0f}% (a restart applies it)",
                    "headroom for bursts: new clients are refused at 100%",
                    peak_utilization_percentage=peak, peak_connections=stats.peak_total,
                    idle_share_percentage=idle_share, memory_mb=memory_mb,
                )  # fmt: skip
    elif (
        peak is not None and stats.peak_total is not None and most > DECREASE_MIN_MAX_CONNECTIONS
        and stats.covered_seconds >= DECREASE_MIN_COVERAGE_SECONDS and 100.0 * stats.peak_total / most < LOW_PEAK_PERCENT
    ):  # fmt: skip
        wanted = max(DECREASE_MIN_MAX_CONNECTIONS, 2 * stats.peak_total + reserved)
        if wanted < most:
            bound = (most - wanted) * work_mem_bytes if work_mem_bytes else None
            impact = (
                f"caps the worst case of work_mem per connection by {(bound or 0) / 1024**2:.0f} MB "
                f"({most - wanted} fewer connections x work_mem {work_mem_bytes // 1024 if work_mem_bytes else '?'} kB)"
                if bound
                else f"{most - wanted} fewer connection slots"
            )
            add(
                "DECREASE_POOL", most, wanted,
                f"the peak of {stats.peak_total} connections over {stats.covered_seconds / 3600:.1f} h is "
                f"{100.0 * stats.peak_total / most:.1f}% of max_connections {most} (under {LOW_PEAK_PERCENT:.0f}%); "
                f"{wanted} keeps twice the peak (a restart applies it)",
                impact, peak_connections=stats.peak_total, max_connections=most, work_mem_bytes=work_mem_bytes,
                memory_bound_bytes=bound,
            )  # fmt: skip
    idle_now = status.oldest_idle_in_transaction_seconds
    idle_seen = stats.idle_in_transaction_max_seconds
    longest = max((v for v in (idle_now, idle_seen) if v is not None), default=None)
    if longest is not None and longest >= IDLE_IN_TRANSACTION_SECONDS:
        timeout = (
            "off" if not idle_in_transaction_timeout_ms else f"{idle_in_transaction_timeout_ms / 1000:.0f} s"
        )
        add(
            "OPTIMIZE_QUERIES", status.idle_in_transaction_connections, 0,
            f"a session stayed idle in transaction for {longest:.0f} s (now {status.idle_in_transaction_connections} "
            "such sessions): each holds a connection and its snapshot (vacuum cannot remove what it may see); "
            "commit or roll back as soon as the work is done, and set idle_in_transaction_session_timeout "
            f"(now {timeout})",
            "connections given back sooner; dead rows vacuumable again",
            idle_in_transaction_now=status.idle_in_transaction_connections,
            oldest_idle_in_transaction_seconds_now=idle_now, idle_in_transaction_max_seconds_in_range=idle_seen,
            idle_in_transaction_session_timeout_ms=idle_in_transaction_timeout_ms,
        )  # fmt: skip
    return found


# --- trends ---------------------------------------------------------------------------------------

BUCKET_SECONDS = {"MINUTE": 60, "HOUR": 3600, "DAY": 86400}


def aggregation_for(span_seconds: float) -> str:
    if span_seconds <= 3 * 3600:
        return "MINUTE"
    return "HOUR" if span_seconds <= 7 * 86400 else "DAY"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def trends(
    target_id: str, samples: Iterable[HistoryRecord], size: int, reserved: int
) -> list[ConnectionTrend]:
    """One point per bucket of the samples that measured connections."""
    cells: dict[int, list[HistoryRecord]] = {}
    for r in samples:
        if _int(r.data, "connections_total") is not None:
            cells.setdefault(int(r.at.timestamp() // size) * size, []).append(r)
    found = []
    for bucket in sorted(cells):
        group = cells[bucket]
        totals = [int(r.data["connections_total"]) for r in group]

        def mean(key: str, group: list[HistoryRecord] = group) -> float:
            values = [int(v) for r in group if (v := r.data.get(key)) is not None]
            return round(sum(values) / len(values), 2) if values else 0.0

        maxes = [m for r in group if (m := _int(r.data, "connections_max"))]
        most = max(maxes) if maxes else None
        found.append(ConnectionTrend(
            timestamp=iso(datetime.fromtimestamp(bucket, UTC)), target_id=target_id, samples=len(group),
            average_connections=round(sum(totals) / len(totals), 2), peak_connections=max(totals),
            average_active=mean("connections_active"), average_idle=mean("connections_idle"),
            average_idle_in_transaction=mean("connections_idle_in_transaction"), max_connections=most,
            peak_utilization_percentage=round(100.0 * max(totals) / usable(most, reserved, 0), 2) if most else None,
        ))  # fmt: skip
    return found


# --- the service ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    status: ConnectionPoolStatus
    work_mem_bytes: int | None
    idle_in_transaction_timeout_ms: int | None


def read_live(ports: Ports, target: servers.Target) -> Live:
    with ports.sql.session(target.target_id, node=target.node) as session:
        rows = session.fetch_all(q.SESSIONS)
        found = {
            name: (setting, unit)
            for name, setting, unit in session.fetch_all(q.SETTINGS, (CONNECTION_SETTINGS,))
        }
    sessions = [Session(*row) for row in rows]
    ints = {
        name: int(found[name][0]) if name in found else 0
        for name in ("max_connections", "superuser_reserved_connections", "reserved_connections")
    }
    work_mem = setting_bytes(*found["work_mem"]) if "work_mem" in found else None
    timeout = found.get("idle_in_transaction_session_timeout")
    return Live(status_of(sessions, ints, target.target_id), work_mem, int(timeout[0]) if timeout else None)


def connection_analysis(
    ports: Ports,
    principal: Principal,
    *,
    target_id: str | None,
    tenant_id: str | None,
    node: str | None = None,
    time_range_text: str | None = None,
) -> ConnectionAnalysisResponse:
    span = time_range.parse(time_range_text, default=DEFAULT_RANGE, max_age=MAX_AGE)
    found = servers.targets(ports, principal, target_id, tenant_id, node, what="its connections")
    tenant = tenant_scope(principal, tenant_id)
    notes: list[str] = []
    live: dict[str, Live] = {}
    for target in found:
        try:
            live[target.target_id] = read_live(ports, target)
        except EngineError as exc:
            if target_id is not None:
                raise
            notes.append(f"{target.target_id}: connections not read: {exc}"[:500])
    samples: dict[str, list[HistoryRecord]] = {}
    if node is not None:  # the capture samples a cluster through its primary, not each member
        notes.append(
            f"{target_id} node {node}: the monitoring samples are of the cluster's primary: no utilization over "
            "the range, no trend and no recommendation that needs them for a named member"
        )
    elif live:

        def keep(record: HistoryRecord) -> None:
            if record.target_id in live:
                samples.setdefault(record.target_id, []).append(record)

        ports.history.query(
            SAMPLES_STREAM, start=span.start, end=span.end, target_id=target_id, tenant_id=tenant, page_size=1,
            newest_first=False, visit=keep,
        )  # fmt: skip
    span_seconds = (span.end - span.start).total_seconds()
    aggregation = aggregation_for(span_seconds)
    utilization, recommendations, history = [], [], []
    for target in found:
        if target.target_id not in live:
            continue
        one = live[target.target_id]
        own = samples.get(target.target_id, [])
        stats = sample_stats(own)
        util = utilization_of(target.target_id, one.status, stats)
        utilization.append(util)
        memory = target.server.record.get("memory")
        recommendations += recommend(
            target.target_id, one.status, util, stats, memory_mb=int(memory) if memory else None,
            work_mem_bytes=one.work_mem_bytes, idle_in_transaction_timeout_ms=one.idle_in_transaction_timeout_ms,
        )  # fmt: skip
        reserved = one.status.superuser_reserved_connections + one.status.reserved_connections
        points = trends(target.target_id, own, BUCKET_SECONDS[aggregation], reserved)
        if not points and node is None:
            notes.append(
                f"{target.target_id}: no monitoring samples in the range: no trend, and no recommendation that "
                "needs one (the capture schedule samples every running server each minute)"
            )
        history += points
    statuses = [live[t.target_id].status for t in found if t.target_id in live]
    empty = ConnectionPoolStatus(
        max_connections=0, current_connections=0, active_connections=0, idle_connections=0, waiting_connections=0,
        utilization_percentage=0.0, idle_in_transaction_connections=0, superuser_reserved_connections=0,
        reserved_connections=0, usable_connections=0, oldest_connection_age_seconds=None,
        oldest_idle_in_transaction_seconds=None, by_database=[], by_user=[], by_application=[],
    )  # fmt: skip
    if not found:
        notes.append("no running server in scope")
    return ConnectionAnalysisResponse(
        current_status=total_of(statuses) if statuses else empty, utilization=utilization,
        recommendations=recommendations, historical_trends=history, servers=statuses,
        aggregation=aggregation,  # type: ignore[arg-type]
        time_range=TimeRange(start=iso(span.start), end=iso(span.end)), notes=notes,
    )  # fmt: skip
