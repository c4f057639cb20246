"""Lock dashboards (`GET /api/v1/locks/dashboard/realtime` and `/dashboard/historical`), in
the seed's shapes, from the live state of the servers in scope and their history. The
numbers are those of the analysis (see analysis, one formula each); in addition:

- realtime `overview`: the live snapshots' locks (`activeLocks` held or awaited), waiting
  locks, root blockers, and `criticalSituations` = CRITICAL root blockers now + CRITICAL
  deadlocks of the last hour; `systemEfficiency` is the lockEfficiencyScore of the last hour;
- `performanceMetrics`: `averageLockWaitTime` (ms, last hour); `deadlockRate`, deadlocks per
  hour over the last 24 hours; `autoResolutionRate`, the percentage of the last 24 hours'
  blocking episodes that auto-resolve ended (null without any episode); `lockThroughput` is
  null: PostgreSQL counts no lock acquisitions (pg_locks shows only the locks of now);
- `alerts`: a HIGH or CRITICAL root blocker now (BLOCKING), a deadlock in the last hour
  (DEADLOCK), a table with 3 or more lock events in the last hour and half of the
  contention (CONTENTION), a performanceImpactScore of 50 or more (PERFORMANCE);
- historical `metrics`, per HOUR, DAY or WEEK (UTC, weeks from Monday): `lockActivity` the
  mean locks per capture round, `blockingEvents` blocking episodes seen, `deadlockEvents`,
  `efficiencyScore`, `performanceImpact`; `trends` compare the period's halves as the
  analysis' trends do.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import Field

from pgfleet.core import time_range
from pgfleet.core.domain import requires
from pgfleet.core.routing import ports as current_ports
from pgfleet.core.routing import principal
from pgfleet.core.scope_params import Node, TargetId, TenantId
from pgfleet.core.wire import CamelModel
from pgfleet.domains.locks import analysis, service, views
from pgfleet.domains.locks.analysis import ContentionHotspot, Evidence
from pgfleet.domains.locks.deadlock_models import DeadlockEvent
from pgfleet.domains.locks.models import BlockingSession, Severity

RECENT = timedelta(hours=1)
DAY = timedelta(hours=24)
RECENT_DEADLOCKS = 5
CONTENTION_ALERT_EVENTS = 3
CONTENTION_ALERT_SCORE = 50
PERFORMANCE_ALERT_SCORE = 50
AGGREGATION_SECONDS = {"HOUR": 3600, "DAY": 86400, "WEEK": 7 * 86400}
MONDAY = 4 * 86400  # the epoch was a Thursday: weeks start 4 days after it
HISTORY_MAX_AGE = timedelta(seconds=service.CAPTURE_TTL_SECONDS)

router = Router()


# --- wire shapes -----------------------------------------------------------------------------


class RealtimeLockOverview(CamelModel):
    active_locks: int
    waiting_locks: int
    blocking_sessions: int
    critical_situations: int
    system_efficiency: int = Field(ge=0, le=100)


class LockPerformanceMetrics(CamelModel):
    average_lock_wait_time: float = Field(description="Milliseconds, over the last hour.")
    lock_throughput: float | None = Field(
        description="Null: PostgreSQL counts no lock acquisitions (pg_locks shows only the locks of now)."
    )
    deadlock_rate: float = Field(description="Deadlocks per hour over the last 24 hours.")
    auto_resolution_rate: float | None = Field(
        description="Percent of the last 24 hours' blocking episodes that auto-resolve ended; null without any."
    )


class LockAlert(CamelModel):
    alert_id: str
    alert_type: Literal["BLOCKING", "DEADLOCK", "CONTENTION", "PERFORMANCE"]
    severity: Severity
    message: str
    timestamp: str
    affected_resources: list[str]
    recommended_action: str
    auto_resolution_available: bool


class RealtimeLockDashboardResponse(CamelModel):
    timestamp: str
    overview: RealtimeLockOverview
    top_contention: list[ContentionHotspot]
    recent_deadlocks: list[DeadlockEvent]
    blocking_sessions_alert: list[BlockingSession]
    performance_metrics: LockPerformanceMetrics
    alerts: list[LockAlert]
    targets: list[str] = Field(description="The servers read live.")


class TimeSeriesData(CamelModel):
    timestamp: str = Field(description="Start of the bucket.")
    value: float


class LockTimeRange(CamelModel):
    start: str
    end: str


class HistoricalLockMetrics(CamelModel):
    lock_activity: list[TimeSeriesData]
    blocking_events: list[TimeSeriesData]
    deadlock_events: list[TimeSeriesData]
    efficiency_score: list[TimeSeriesData]
    performance_impact: list[TimeSeriesData]


class HistoricalLockTrends(CamelModel):
    lock_activity_trend: Literal["INCREASING", "DECREASING", "STABLE"]
    blocking_trend: Literal["INCREASING", "DECREASING", "STABLE"]
    efficiency_trend: Literal["IMPROVING", "DEGRADING", "STABLE"]


class HistoricalLockDashboardResponse(CamelModel):
    time_range: LockTimeRange
    aggregation: Literal["HOUR", "DAY", "WEEK"]
    metrics: HistoricalLockMetrics
    trends: HistoricalLockTrends
    insights: list[str]


# --- realtime --------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _alert_id(*parts: object) -> str:
    return "la-" + hashlib.sha1("/".join(str(p) for p in parts).encode()).hexdigest()[:12]


def _auto_resolved(evidence: Evidence) -> int:
    return sum(
        1
        for r in evidence.resolutions
        if str(r.data.get("reason", "")).startswith("auto-resolve")
        and r.data.get("result") == "SUCCESS"
        and not r.data.get("dry_run")
    )


def realtime(
    evidence: Evidence, snapshots: list[dict[str, Any]], now: datetime
) -> RealtimeLockDashboardResponse:
    """`evidence`: the last 24 hours, the live snapshots (`snapshots`) included as captures."""
    day = evidence
    hour = evidence.within(now - RECENT, evidence.end)
    m_hour = analysis.metrics(hour)
    m_day = analysis.metrics(day)
    spots = analysis.hotspots(hour, m_hour)
    blocking = views.blocking_sessions(snapshots, None, None).blocking_sessions
    alerting = [b for b in blocking if b.blocking_severity in ("HIGH", "CRITICAL")]
    recent = sorted(day.deadlocks, key=lambda r: r.at, reverse=True)
    critical_deadlocks = sum(1 for r in hour.deadlocks if r.data.get("severity") == "CRITICAL")
    alerts: list[LockAlert] = []
    for b in alerting:
        alerts.append(
            LockAlert(
                alert_id=_alert_id("BLOCKING", b.target_id, b.node, b.session_pid),
                alert_type="BLOCKING",
                severity=b.blocking_severity,
                message=f"pid {b.session_pid} ({b.user_name}, {b.application_name or '-'}) on {b.target_id} blocks "
                f"{b.blocked_sessions_count} session(s) for {b.blocking_duration:.0f} s",
                timestamp=_iso(now),
                affected_resources=[b.target_id, *(f"pid {p}" for p in b.blocked_pids)],
                recommended_action=b.recommended_action,
                auto_resolution_available=b.auto_kill_eligible,
            )
        )
    for r in sorted(hour.deadlocks, key=lambda r: r.at, reverse=True):
        alerts.append(
            LockAlert(
                alert_id=_alert_id("DEADLOCK", r.data.get("deadlock_id")),
                alert_type="DEADLOCK",
                severity=r.data.get("severity", "LOW"),
                message=f"deadlock on {r.target_id}: {r.data.get('pattern')}; process {r.data.get('deadlock_victim_pid')} "
                "was rolled back",
                timestamp=_iso(r.at),
                affected_resources=[str(r.target_id), *r.data.get("affected_tables", [])],
                recommended_action=str(r.data.get("prevention_suggestion")),
                auto_resolution_available=False,
            )
        )
    for spot in spots:
        if spot.lock_count >= CONTENTION_ALERT_EVENTS and spot.contention_score >= CONTENTION_ALERT_SCORE:
            alerts.append(
                LockAlert(
                    alert_id=_alert_id("CONTENTION", spot.resource_name, _iso(now)[:13]),
                    alert_type="CONTENTION",
                    severity="HIGH" if spot.contention_score >= 80 else "MEDIUM",
                    message=f"{spot.resource_name}: {spot.lock_count} lock event(s) in the last hour, "
                    f"{spot.contention_score}% of the contention",
                    timestamp=_iso(now),
                    affected_resources=[spot.resource_name],
                    recommended_action=spot.recommended_action,
                    auto_resolution_available=False,
                )
            )
    if m_hour.impact >= PERFORMANCE_ALERT_SCORE:
        alerts.append(
            LockAlert(
                alert_id=_alert_id("PERFORMANCE", _iso(now)[:13]),
                alert_type="PERFORMANCE",
                severity="CRITICAL" if m_hour.impact >= 80 else "HIGH",
                message=f"lock waits cost: performance impact {m_hour.impact}/100 over the last hour "
                f"({m_hour.mean_waiting} waiting session(s) per capture, longest wait {m_hour.max_wait_ms:.0f} ms)",
                timestamp=_iso(now),
                affected_resources=sorted({w.target_id for w in m_hour.waits}),
                recommended_action="see GET /api/v1/locks/analysis for the tables and sessions behind it",
                auto_resolution_available=any(b.auto_kill_eligible for b in alerting),
            )
        )
    span_hours = max((day.end - day.start).total_seconds() / 3600, 1e-9)
    return RealtimeLockDashboardResponse(
        timestamp=_iso(now),
        overview=RealtimeLockOverview(
            active_locks=sum(int(s["total_locks"]) for s in snapshots),
            waiting_locks=sum(int(s["waiting_locks"]) for s in snapshots),
            blocking_sessions=sum(int(s["blocking_sessions"]) for s in snapshots),
            critical_situations=sum(int(s["critical_sessions"]) for s in snapshots) + critical_deadlocks,
            system_efficiency=m_hour.efficiency,
        ),
        top_contention=spots,
        recent_deadlocks=[
            DeadlockEvent.model_validate(r.data | {"target_id": r.target_id})
            for r in recent[:RECENT_DEADLOCKS]
        ],
        blocking_sessions_alert=alerting,
        performance_metrics=LockPerformanceMetrics(
            average_lock_wait_time=m_hour.average_wait_ms,
            lock_throughput=None,
            deadlock_rate=round(m_day.deadlocks / span_hours, 3),
            auto_resolution_rate=round(min(100.0, 100 * _auto_resolved(day) / len(m_day.episodes)), 1)
            if m_day.episodes
            else None,
        ),
        alerts=alerts,
        targets=sorted({str(s["target_id"]) for s in snapshots}),
    )


# --- historical ------------------------------------------------------------------------------


def _trend(values: list[float], counts: bool) -> int:
    return analysis.direction(values, counts=counts)[0]


def historical(
    evidence: Evidence, aggregation: Literal["HOUR", "DAY", "WEEK"]
) -> HistoricalLockDashboardResponse:
    size = AGGREGATION_SECONDS[aggregation]
    parts = analysis.series(evidence, size, offset=MONDAY if aggregation == "WEEK" else 0)
    series: dict[str, list[TimeSeriesData]] = {
        k: [] for k in ("activity", "blocking", "deadlocks", "efficiency", "impact")
    }
    busiest: tuple[int, str, str | None] = (0, "", None)
    for at, part, m in parts:
        rounds = {c.data.get("capture_id") or (c.target_id, c.at) for c in part.captures}
        stamp = _iso(at)
        point = {
            "activity": sum(int(c.data.get("total_locks") or 0) for c in part.captures) / len(rounds)
            if rounds
            else 0.0,
            "blocking": float(len(m.episodes)),
            "deadlocks": float(m.deadlocks),
            "efficiency": float(m.efficiency),
            "impact": float(m.impact),
        }
        for key, value in point.items():
            series[key].append(TimeSeriesData(timestamp=stamp, value=round(value, 3)))
        if m.contention_events > busiest[0]:
            tables = Counter(w.table for w in m.waits if w.table)
            busiest = (m.contention_events, stamp, tables.most_common(1)[0][0] if tables else None)

    def values(key: str) -> list[float]:
        return [p.value for p in series[key]]

    activity, blocking, efficiency = (
        _trend(values("activity"), False),
        _trend(values("blocking"), True),
        _trend(values("efficiency"), False),
    )
    whole = analysis.metrics(evidence)
    spots = analysis.hotspots(evidence, whole, limit=1)
    insights: list[str] = []
    if busiest[0]:
        on = f", mostly on {busiest[2]}" if busiest[2] else ""
        insights.append(
            f"the busiest {aggregation.lower()} began {busiest[1]}: {busiest[0]} lock event(s){on}"
        )
    if spots:
        insights.append(
            f"{spots[0].resource_name} is the most contended table of the period "
            f"({spots[0].lock_count} lock event(s)): {spots[0].recommended_action}"
        )
    if whole.deadlocks:
        patterns = Counter(str(r.data.get("pattern")) for r in evidence.deadlocks)
        pattern, times = patterns.most_common(1)[0]
        insights.append(f"{whole.deadlocks} deadlock(s); the most frequent pattern ({times}): {pattern}")
    if whole.timeouts:
        insights.append(f"{whole.timeouts} statement(s) were cancelled by lock_timeout")
    words = {1: "rising", -1: "falling", 0: "stable"}
    insights.append(
        f"lock activity is {words[activity]}, blocking is {words[blocking]}, efficiency is "
        f"{ {1: 'improving', -1: 'degrading', 0: 'stable'}[efficiency] } over the period"
    )
    if not evidence.captures:
        insights.append(
            "no lock capture in the period: the capture schedule (every minute) has not run for these servers"
        )
    moves: dict[int, Literal["INCREASING", "DECREASING", "STABLE"]] = {
        1: "INCREASING",
        -1: "DECREASING",
        0: "STABLE",
    }
    verdicts: dict[int, Literal["IMPROVING", "DEGRADING", "STABLE"]] = {
        1: "IMPROVING",
        -1: "DEGRADING",
        0: "STABLE",
    }
    return HistoricalLockDashboardResponse(
        time_range=LockTimeRange(start=_iso(evidence.start), end=_iso(evidence.end)),
        aggregation=aggregation,
        metrics=HistoricalLockMetrics(
            lock_activity=series["activity"],
            blocking_events=series["blocking"],
            deadlock_events=series["deadlocks"],
            efficiency_score=series["efficiency"],
            performance_impact=series["impact"],
        ),
        trends=HistoricalLockTrends(
            lock_activity_trend=moves[activity],
            blocking_trend=moves[blocking],
            efficiency_trend=verdicts[efficiency],
        ),
        insights=insights,
    )


# --- routes ----------------------------------------------------------------------------------


@router.get("/dashboard/realtime", summary="Locks now: overview, contention, deadlocks, blockers and alerts")
@requires("locks:read")
def realtime_dashboard(
    target_id: TargetId = None, tenant_id: TenantId = None, node: Node = None
) -> RealtimeLockDashboardResponse:
    ports, caller = current_ports(), principal(router)
    now = datetime.now(UTC)
    found = service.targets(ports, caller, target_id, tenant_id, node)
    snapshots = service.snapshots(ports, found)
    evidence = analysis.gather(ports, caller, target_id, tenant_id, node, now - DAY, now)
    evidence.captures += [analysis.capture_of_snapshot(s) for s in snapshots]
    evidence.end = max([evidence.end, *(c.at + timedelta(milliseconds=1) for c in evidence.captures)])
    return realtime(evidence, snapshots, now)


@router.get(
    "/dashboard/historical", summary="Lock activity, blocking, deadlocks and efficiency per hour, day or week"
)
@requires("locks:read")
def historical_dashboard(
    time_range_text: Annotated[str, Query(alias="timeRange", max_length=128, description=time_range.FORMS)],
    aggregation: Annotated[Literal["HOUR", "DAY", "WEEK"], Query()],
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    node: Node = None,
) -> HistoricalLockDashboardResponse:
    span = time_range.parse(time_range_text, default=DAY, max_age=HISTORY_MAX_AGE)
    evidence = analysis.gather(
        current_ports(), principal(router), target_id, tenant_id, node, span.start, span.end
    )
    return historical(evidence, aggregation)
