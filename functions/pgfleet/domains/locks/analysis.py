"""Lock wait analysis (`GET /api/v1/locks/analysis`), from what the history holds for a
period: the lock captures (stream "locks", one per server a minute), the deadlocks, lock
timeouts and long lock waits found in the logs (see deadlocks), and, for CURRENT, the live
state as one more capture.

How the evidence is counted:
- a *wait* is one session waiting for one lock. The captures that see it waiting count it
  once (its start is the capture time less its `wait_seconds`; two sightings of one pid
  whose starts are within 2 s are the same wait), with its longest sighting as its length;
  a wait the log timed ("acquired ... after X ms") is merged with its sightings and gives its
  exact length. Its table is the lock's relation, else the table its query locks;
- a *blocking episode* is one root blocker seen in consecutive captures of its server;
- deadlocks and lock timeouts are the log's events of the period.

The numbers, one formula each:
- averageWaitTime, maxWaitTime: milliseconds, mean and longest length of the waits;
- totalLockEvents = waits + deadlocks + lock timeouts; blockingEvents = blocking episodes;
- peakConcurrentLocks: the most locks held or awaited at one capture (servers of one capture
  round added up);
- lockEfficiencyScore = 100 * (granted locks / all locks, summed over the captures), less 1
  per deadlock and per lock timeout, within 0..100 (100 without captures or events);
- performanceImpactScore = 50 * min(1, mean waiting sessions per capture / 5)
  + 50 * min(1, longest wait / 300 s): the locks domain's impact formula, over the period;
- contentionScore of a table = 100 * its share of the contention weight, where a table's
  weight is the seconds waited for it plus 1 per deadlock or lock timeout on it;
- businessHoursImpact: a wait, blocking episode, deadlock or lock timeout fell within its
  tenant's business hours (the auto-resolve configuration's, Monday to Friday);
- trendDirection and each LockTrend: the period's second half against its first, for the
  contention events (waits + deadlocks + timeouts) per hour: DEGRADING / INCREASING above
  +20 % (and at least 2 more), IMPROVING / DECREASING below -20 % (and at least 2 fewer),
  else STABLE; changeRate is that change in percent (100 from nothing to something).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import Field

from pgfleet.core import time_range
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.domain import requires
from pgfleet.core.errors import ValidationFailed
from pgfleet.core.routing import ports as current_ports
from pgfleet.core.routing import principal
from pgfleet.core.scope_params import Node, TargetId, TenantId
from pgfleet.core.wire import CamelModel
from pgfleet.domains.locks import deadlock_scan, lock_log, service
from pgfleet.ports.history import HistoryRecord

SAME_WAIT = timedelta(seconds=2)
TREND_THRESHOLD = 0.2
TREND_MIN_CHANGE = 2
HOTSPOTS = 5
DEFAULT_HOURS = {"CURRENT": 1, "HISTORICAL": 24, "TREND": 168}
HISTORY_MAX_AGE = timedelta(seconds=service.CAPTURE_TTL_SECONDS)
BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
MAX_POINTS = 48
ROW_LOCKS = frozenset({"transactionid", "tuple"})

router = Router()


# --- wire shapes -----------------------------------------------------------------------------


class LockAnalysisPeriod(CamelModel):
    start: str
    end: str


class ContentionHotspot(CamelModel):
    resource_type: Literal["TABLE", "INDEX", "SEQUENCE"]
    resource_name: str
    contention_score: int = Field(ge=0, le=100)
    lock_count: int
    average_wait_time: float = Field(description="Milliseconds.")
    recommended_action: str


class TimePoint(CamelModel):
    timestamp: str
    value: float


class LockTrend(CamelModel):
    metric: str
    time_points: list[TimePoint]
    trend: Literal["INCREASING", "DECREASING", "STABLE"]
    change_rate: float = Field(description="Percent, the period's second half against its first.")


class LockWaitAnalysis(CamelModel):
    analysis_id: str
    analysis_type: Literal["CURRENT", "HISTORICAL", "TREND"]
    analysis_period: LockAnalysisPeriod
    targets_analyzed: list[str]
    captures_analyzed: int
    total_lock_events: int
    blocking_events: int
    deadlock_events: int
    average_wait_time: float = Field(description="Milliseconds.")
    max_wait_time: float = Field(description="Milliseconds.")
    lock_timeout_events: int
    most_contended_table: str | None
    most_blocking_user: str | None
    most_blocked_user: str | None
    peak_concurrent_locks: int
    lock_efficiency_score: int = Field(ge=0, le=100)
    performance_impact_score: int = Field(ge=0, le=100)
    business_hours_impact: bool
    trend_direction: Literal["IMPROVING", "STABLE", "DEGRADING"]
    contentiion_hotspots: list[ContentionHotspot] = Field(description="The seed's spelling.")


class LockAnalysisResponse(CamelModel):
    analysis: LockWaitAnalysis
    recommendations: list[str]
    trends: list[LockTrend]


# --- evidence --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    target_id: str
    tenant_id: str | None
    at: datetime
    data: dict[str, Any]


@dataclass
class Wait:
    target_id: str
    tenant_id: str | None
    pid: int
    start: datetime
    seconds: float
    table: str | None
    user: str | None
    lock_type: str | None
    lock_mode: str | None


@dataclass
class Episode:
    target_id: str
    tenant_id: str | None
    pid: int
    user: str | None
    first: datetime
    last: datetime
    blocked: int
    seconds: float
    state: str | None


@dataclass
class Evidence:
    """What a period holds, for the caller's scope."""

    start: datetime
    end: datetime
    captures: list[Capture] = field(default_factory=list)
    deadlocks: list[HistoryRecord] = field(default_factory=list)
    timeouts: list[HistoryRecord] = field(default_factory=list)
    log_waits: list[HistoryRecord] = field(default_factory=list)
    resolutions: list[HistoryRecord] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)

    def within(self, start: datetime, end: datetime) -> Evidence:
        def keep(records: Iterable[Any]) -> list[Any]:
            return [r for r in records if start <= r.at < end]

        return Evidence(
            start,
            end,
            keep(self.captures),
            keep(self.deadlocks),
            keep(self.timeouts),
            keep(self.log_waits),
            keep(self.resolutions),
            self.targets,
        )


def capture_of_snapshot(snap: dict[str, Any]) -> Capture:
    return Capture(snap["target_id"], snap.get("tenant_id"), _at(snap["at"]), snap)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def gather(
    ports: Ports,
    principal_: Principal,
    target_id: str | None,
    tenant_id: str | None,
    node: str | None,
    start: datetime,
    end: datetime,
    *,
    live: bool = False,
    scan_logs: bool = True,
) -> Evidence:
    """The evidence of [start, end) in the caller's scope. With `scan_logs`, the running
    servers' logs are scanned first (deadlock_scan.detect), so the log's events are current;
    with `live`, each running server's locks now are one more capture."""
    tenant = service.tenant_scope(principal_, tenant_id)
    found = service.targets(ports, principal_, target_id, tenant_id, node, require_running=False)
    running = [t for t in found if t.running]
    if scan_logs and running:
        deadlock_scan.detect(ports, running)
    evidence = Evidence(start, end, targets=[t.target_id for t in found])
    for record in service.history_of(ports, service.STREAM, target_id, tenant, start, end):
        if record.target_id is not None and (node is None or record.data.get("node") == node):
            evidence.captures.append(Capture(record.target_id, record.tenant_id, record.at, record.data))
    for stream, into in (
        (deadlock_scan.STREAM, evidence.deadlocks),
        (deadlock_scan.TIMEOUTS, evidence.timeouts),
        (deadlock_scan.WAITS, evidence.log_waits),
        (service.RESOLUTIONS, evidence.resolutions),
    ):
        into += [
            r
            for r in service.history_of(ports, stream, target_id, tenant, start, end)
            if node is None or r.data.get("node") == node
        ]
    if live and running:
        now = [capture_of_snapshot(s) for s in service.snapshots(ports, running)]
        evidence.captures += now
        # The snapshots are taken after the period was fixed: it ends with them.
        evidence.end = max([evidence.end, *(c.at + timedelta(milliseconds=1) for c in now)])
    evidence.captures.sort(key=lambda c: c.at)
    return evidence


_statements: dict[str, lock_log.StatementTables | None] = {}


def query_table(query: str | None) -> str | None:
    """The table a query locks (its first target), as the default search_path shows it."""
    if not query:
        return None
    if query not in _statements:
        if len(_statements) > 10_000:
            _statements.clear()
        _statements[query] = lock_log.statement_tables(query)
    parsed = _statements[query]
    picked = (parsed.targets or parsed.tables) if parsed else ()
    return deadlock_scan.display_name(*picked[0]) if picked else None


def waits_of(evidence: Evidence) -> list[Wait]:
    """Every wait of the period, counted once (see the module docstring)."""
    by_pid: dict[tuple[str, int], list[Wait]] = {}

    def merge(
        target: str,
        tenant: str | None,
        pid: int,
        start: datetime,
        seconds: float,
        table: str | None,
        user: str | None,
        lock_type: str | None,
        mode: str | None,
    ) -> None:
        for wait in by_pid.setdefault((target, pid), []):
            if abs(wait.start - start) <= SAME_WAIT:
                wait.seconds = max(wait.seconds, seconds)
                wait.table = wait.table or table
                return
        by_pid[(target, pid)].append(Wait(target, tenant, pid, start, seconds, table, user, lock_type, mode))

    for cap in evidence.captures:
        for w in cap.data.get("waiting", []):
            seconds = float(w.get("wait_seconds") or 0.0)
            table = (
                deadlock_scan.display_name(w.get("schema_name"), w["table_name"])
                if w.get("table_name")
                else query_table(w.get("query"))
            )
            merge(
                cap.target_id,
                cap.tenant_id,
                int(w["pid"]),
                cap.at - timedelta(seconds=seconds),
                seconds,
                table,
                w.get("user_name"),
                w.get("lock_type"),
                w.get("lock_mode"),
            )
    for r in evidence.log_waits:
        seconds = float(r.data.get("wait_ms") or 0.0) / 1000
        merge(
            str(r.target_id),
            r.tenant_id,
            int(r.data["pid"]),
            r.at - timedelta(seconds=seconds),
            seconds,
            r.data.get("table_name") or query_table(r.data.get("query")),
            r.data.get("user_name"),
            r.data.get("lock_type"),
            r.data.get("lock_mode"),
        )
    return [w for waits in by_pid.values() for w in waits]


def episodes_of(evidence: Evidence) -> list[Episode]:
    """Root blockers, one episode per run of consecutive captures of its server."""
    episodes: list[Episode] = []
    active: dict[str, dict[int, Episode]] = {}
    for cap in evidence.captures:
        now_active = active.setdefault(cap.target_id, {})
        roots = {int(b["pid"]): b for b in cap.data.get("blockers", []) if b.get("root")}
        for pid in list(now_active):
            if pid not in roots:
                del now_active[pid]
        for pid, b in roots.items():
            episode = now_active.get(pid)
            if episode is None:
                episode = Episode(
                    cap.target_id,
                    cap.tenant_id,
                    pid,
                    b.get("user_name"),
                    cap.at,
                    cap.at,
                    0,
                    0.0,
                    b.get("state"),
                )
                now_active[pid] = episode
                episodes.append(episode)
            episode.last = cap.at
            episode.blocked = max(episode.blocked, int(b.get("blocked_count") or 0))
            episode.seconds = max(episode.seconds, float(b.get("blocking_seconds") or 0.0))
            episode.state = b.get("state") or episode.state
    return episodes


# --- metrics ---------------------------------------------------------------------------------


@dataclass
class Metrics:
    waits: list[Wait]
    episodes: list[Episode]
    deadlocks: int
    timeouts: int
    average_wait_ms: float
    max_wait_ms: float
    peak_locks: int
    efficiency: int
    impact: int
    captures: int
    mean_waiting: float

    @property
    def contention_events(self) -> int:
        return len(self.waits) + self.deadlocks + self.timeouts


def metrics(
    evidence: Evidence, waits: list[Wait] | None = None, episodes: list[Episode] | None = None
) -> Metrics:
    """The period's numbers; `waits` and `episodes` when they are already known (a bucket's
    share of its period's, see `series`)."""
    waits = waits_of(evidence) if waits is None else waits
    lengths = [w.seconds * 1000 for w in waits]
    rounds: Counter[Any] = Counter()
    for cap in evidence.captures:
        rounds[cap.data.get("capture_id") or (cap.target_id, cap.at)] += int(cap.data.get("total_locks") or 0)
    granted = sum(int(c.data.get("granted_locks") or 0) for c in evidence.captures)
    total = sum(int(c.data.get("total_locks") or 0) for c in evidence.captures)
    events = len(evidence.deadlocks) + len(evidence.timeouts)
    efficiency = (100 * granted / total if total else 100.0) - events
    waiting = [int(c.data.get("waiting_locks") or 0) for c in evidence.captures]
    mean_waiting = sum(waiting) / len(waiting) if waiting else 0.0
    longest = max(lengths, default=0.0) / 1000
    return Metrics(
        waits=waits,
        episodes=episodes_of(evidence) if episodes is None else episodes,
        deadlocks=len(evidence.deadlocks),
        timeouts=len(evidence.timeouts),
        average_wait_ms=round(sum(lengths) / len(lengths), 3) if lengths else 0.0,
        max_wait_ms=round(max(lengths, default=0.0), 3),
        peak_locks=max(rounds.values(), default=0),
        efficiency=max(0, min(100, round(efficiency))),
        impact=round(50 * min(1.0, mean_waiting / 5) + 50 * min(1.0, longest / 300)),
        captures=len(evidence.captures),
        mean_waiting=round(mean_waiting, 3),
    )


def hotspots(evidence: Evidence, m: Metrics, limit: int = HOTSPOTS) -> list[ContentionHotspot]:
    weight: dict[str, float] = {}
    count: Counter[str] = Counter()
    waited: dict[str, list[float]] = {}
    row_waits: Counter[str] = Counter()
    relation_waits: Counter[str] = Counter()
    deadlocked: Counter[str] = Counter()
    timed_out: Counter[str] = Counter()
    for w in m.waits:
        if w.table:
            weight[w.table] = weight.get(w.table, 0.0) + w.seconds
            count[w.table] += 1
            waited.setdefault(w.table, []).append(w.seconds * 1000)
            (row_waits if w.lock_type in ROW_LOCKS else relation_waits)[w.table] += 1
    for r in evidence.deadlocks:
        for table in r.data.get("affected_tables", []):
            weight[table] = weight.get(table, 0.0) + 1
            count[table] += 1
            deadlocked[table] += 1
    for r in evidence.timeouts:
        table = r.data.get("table_name")
        if table:
            weight[table] = weight.get(table, 0.0) + 1
            count[table] += 1
            timed_out[table] += 1
    total = sum(weight.values())
    result = []
    for table, share in sorted(weight.items(), key=lambda item: (-item[1], item[0]))[:limit]:
        lengths = waited.get(table, [])
        actions = []
        if deadlocked[table]:
            actions.append(
                f"take locks on {table} in the same order in every transaction "
                f"({deadlocked[table]} deadlock(s))"
            )
        if row_waits[table] >= relation_waits[table] and row_waits[table]:
            actions.append(
                f"shorten the transactions that change rows of {table}, and commit before slow work"
            )
        elif relation_waits[table]:
            actions.append(f"run DDL and LOCK TABLE on {table} outside peak hours, with a short lock_timeout")
        if timed_out[table]:
            actions.append(
                f"{timed_out[table]} statement(s) on {table} gave up at lock_timeout: find what held it"
            )
        result.append(
            ContentionHotspot(
                resource_type="TABLE",
                resource_name=table,
                contention_score=round(100 * share / total) if total else 0,
                lock_count=count[table],
                average_wait_time=round(sum(lengths) / len(lengths), 3) if lengths else 0.0,
                recommended_action="; ".join(actions) or f"watch {table}",
            )
        )
    return result


def _change(first: float, second: float) -> float:
    if first == 0:
        return 100.0 if second > 0 else 0.0
    return round(100 * (second - first) / first, 1)


def direction(values: list[float], *, counts: bool) -> tuple[int, float]:
    """(+1 rising, -1 falling or 0 stable; the change in percent) of a series, its second
    half against its first (see the module docstring). A series of counts must also change
    by at least TREND_MIN_CHANGE events between the halves."""
    half = len(values) // 2
    if half == 0:
        return 0, 0.0
    first, second = values[:half], values[half:]
    change = _change(sum(first) / len(first), sum(second) / len(second))
    enough = not counts or abs(sum(second) - sum(first)) >= TREND_MIN_CHANGE
    if change > 100 * TREND_THRESHOLD and enough:
        return 1, change
    if change < -100 * TREND_THRESHOLD and enough:
        return -1, change
    return 0, change


def bucket_seconds(span: timedelta) -> int:
    return next((b for b in BUCKETS if span.total_seconds() / b <= MAX_POINTS), BUCKETS[-1])


def buckets(evidence: Evidence, size: int, offset: int = 0) -> list[tuple[datetime, Evidence]]:
    """The period cut into buckets of `size` seconds, aligned on the epoch plus `offset`
    seconds (UTC hours and days; weeks from a Monday with offset 4 days)."""
    epoch = (int(evidence.start.timestamp()) - offset) // size * size + offset
    edge = datetime.fromtimestamp(epoch, UTC)
    result = []
    while edge < evidence.end:
        upper = edge + timedelta(seconds=size)
        result.append((edge, evidence.within(max(edge, evidence.start), min(upper, evidence.end))))
        edge = upper
    return result


def series(evidence: Evidence, size: int, offset: int = 0) -> list[tuple[datetime, Evidence, Metrics]]:
    """The metrics of each bucket of the period (see `buckets`). A wait or a blocking episode
    counts in the bucket where it began (the first one when it began before the period),
    however many buckets saw it."""
    waits, episodes = waits_of(evidence), episodes_of(evidence)
    parts = buckets(evidence, size, offset)
    result = []
    for index, (at, part) in enumerate(parts):
        low = datetime.min.replace(tzinfo=UTC) if index == 0 else part.start
        high = part.end if index < len(parts) - 1 else datetime.max.replace(tzinfo=UTC)
        mine = [w for w in waits if low <= w.start < high]
        began = [e for e in episodes if low <= e.first < high]
        result.append((at, part, metrics(part, mine, began)))
    return result


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# (name, value of a bucket's metrics, whether the values are counts of events)
TREND_METRICS: tuple[tuple[str, Any, bool], ...] = (
    ("contentionEvents", lambda m: m.contention_events, True),
    ("averageWaitTime", lambda m: m.average_wait_ms, False),
    ("waitingSessions", lambda m: m.mean_waiting, False),
    ("blockingEvents", lambda m: len(m.episodes), True),
    ("deadlocks", lambda m: m.deadlocks, True),
    ("lockTimeouts", lambda m: m.timeouts, True),
)


def trends(evidence: Evidence) -> list[LockTrend]:
    size = bucket_seconds(evidence.end - evidence.start)
    cut = series(evidence, size)
    result = []
    for name, value_of, counts in TREND_METRICS:
        values = [float(value_of(m)) for _, _, m in cut]
        move, change = direction(values, counts=counts)
        points = [
            TimePoint(timestamp=_iso(at), value=round(v, 3))
            for (at, _, _), v in zip(cut, values, strict=True)
        ]
        trend: Literal["INCREASING", "DECREASING", "STABLE"] = (
            "INCREASING" if move > 0 else "DECREASING" if move < 0 else "STABLE"
        )
        result.append(LockTrend(metric=name, time_points=points, trend=trend, change_rate=change))
    return result


def business_hours_impact(ports: Ports, evidence: Evidence, m: Metrics) -> bool:
    configs: dict[str | None, dict[str, Any] | None] = {}

    def inside(tenant: str | None, moment: datetime) -> bool:
        if tenant not in configs:
            configs[tenant] = service.config_of(ports, tenant) if tenant else None
        config = configs[tenant]
        return config is not None and service.in_business_hours(config, moment)

    moments = [(w.tenant_id, w.start) for w in m.waits] + [(e.tenant_id, e.first) for e in m.episodes]
    moments += [(r.tenant_id, r.at) for r in (*evidence.deadlocks, *evidence.timeouts)]
    return any(inside(tenant, at) for tenant, at in moments)


def recommendations(evidence: Evidence, m: Metrics, spots: list[ContentionHotspot]) -> list[str]:
    advice: list[str] = []
    if spots:
        top = spots[0]
        advice.append(
            f"{top.resource_name} is the most contended table ({top.lock_count} lock event(s), "
            f"{top.average_wait_time:.0f} ms average wait): {top.recommended_action}"
        )
    idle = [e for e in m.episodes if (e.state or "").startswith("idle in transaction")]
    if idle:
        users = ", ".join(sorted({e.user or "?" for e in idle}))
        advice.append(
            f"{len(idle)} blocking episode(s) came from sessions idle in a transaction ({users}): set "
            "idle_in_transaction_session_timeout, and commit or roll back before waiting on anything else"
        )
    long = [e for e in m.episodes if e.seconds >= 300]
    if long:
        advice.append(
            f"{len(long)} blocker(s) held others for 5 minutes or more: enable auto-resolve for them "
            "(PUT /api/v1/locks/auto-resolve/config) or end them with blocking-sessions/{pid}/terminate"
        )
    suggestions = Counter(str(r.data.get("prevention_suggestion")) for r in evidence.deadlocks)
    for suggestion, times in suggestions.most_common(3):
        advice.append(f"{times} deadlock(s): {suggestion}")
    if m.timeouts:
        advice.append(
            f"{m.timeouts} statement(s) were cancelled by lock_timeout: retry them, and look at the "
            "blockers of the same period"
        )
    if not advice:
        advice.append("no lock contention in the period: nothing to change")
    return advice


def analyze(
    ports: Ports, evidence: Evidence, analysis_type: Literal["CURRENT", "HISTORICAL", "TREND"]
) -> LockAnalysisResponse:
    m = metrics(evidence)
    spots = hotspots(evidence, m)
    blocking_users: Counter[str] = Counter()
    for e in m.episodes:
        if e.user:
            blocking_users[e.user] += max(1, e.blocked)
    blocked_users = Counter(w.user for w in m.waits if w.user)
    lock_trends = trends(evidence)
    events = next(t for t in lock_trends if t.metric == "contentionEvents")
    trend_direction: Literal["IMPROVING", "STABLE", "DEGRADING"] = (
        "DEGRADING"
        if events.trend == "INCREASING"
        else "IMPROVING"
        if events.trend == "DECREASING"
        else "STABLE"
    )
    analysis = LockWaitAnalysis(
        analysis_id=f"la-{secrets.token_hex(6)}",
        analysis_type=analysis_type,
        analysis_period=LockAnalysisPeriod(start=_iso(evidence.start), end=_iso(evidence.end)),
        targets_analyzed=evidence.targets,
        captures_analyzed=m.captures,
        total_lock_events=m.contention_events,
        blocking_events=len(m.episodes),
        deadlock_events=m.deadlocks,
        average_wait_time=m.average_wait_ms,
        max_wait_time=m.max_wait_ms,
        lock_timeout_events=m.timeouts,
        most_contended_table=spots[0].resource_name if spots else None,
        most_blocking_user=blocking_users.most_common(1)[0][0] if blocking_users else None,
        most_blocked_user=blocked_users.most_common(1)[0][0] if blocked_users else None,
        peak_concurrent_locks=m.peak_locks,
        lock_efficiency_score=m.efficiency,
        performance_impact_score=m.impact,
        business_hours_impact=business_hours_impact(ports, evidence, m),
        trend_direction=trend_direction,
        contentiion_hotspots=spots,
    )
    return LockAnalysisResponse(
        analysis=analysis, recommendations=recommendations(evidence, m, spots), trends=lock_trends
    )


def period(
    analysis_type: str, time_range_text: str | None, period_hours: float | None
) -> time_range.TimeRange:
    if time_range_text and period_hours is not None:
        raise ValidationFailed("give timeRange or periodHours, not both", details={"field": "periodHours"})
    if period_hours is not None:
        end = datetime.now(UTC)
        return time_range.parse(
            f"{round(period_hours * 3600)}s", default=timedelta(hours=1), max_age=HISTORY_MAX_AGE, now=end
        )
    return time_range.parse(
        time_range_text, default=timedelta(hours=DEFAULT_HOURS[analysis_type]), max_age=HISTORY_MAX_AGE
    )


@router.get(
    "/analysis",
    summary="Lock waits, blocking, deadlocks and lock timeouts of a period, with hotspots and trends",
)
@requires("locks:read")
def lock_analysis(
    analysis_type: Annotated[Literal["CURRENT", "HISTORICAL", "TREND"], Query(alias="analysisType")],
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    node: Node = None,
    time_range_text: Annotated[
        str | None,
        Query(
            alias="timeRange",
            max_length=128,
            description=f"{time_range.FORMS}; default: the last hour (CURRENT), 24 hours (HISTORICAL), 7 days (TREND).",
        ),
    ] = None,
    period_hours: Annotated[
        float | None,
        Query(alias="periodHours", gt=0, le=720, description="The last N hours (instead of timeRange)."),
    ] = None,
) -> LockAnalysisResponse:
    span = period(analysis_type, time_range_text, period_hours)
    evidence = gather(
        current_ports(),
        principal(router),
        target_id,
        tenant_id,
        node,
        span.start,
        span.end,
        live=analysis_type == "CURRENT",
    )
    return analyze(current_ports(), evidence, analysis_type)
