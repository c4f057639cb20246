"""The deadlock listing, the analysis and the dashboards through the api handler, on records
the history holds (the scans that write them run against real servers in
tests/integration/test_lock_deadlocks.py): wire names, filters, scope and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgfleet.domains import locks
from pgfleet.domains.locks import analysis, dashboards, deadlocks
from pgfleet.domains.locks.deadlock_models import DeadlockEvent, DeadlockGraph
from pgfleet.ports.history import HistoryRecord

MOUNTED = {m.router for m in locks.DOMAIN.mounts}
pytestmark = pytest.mark.skipif(
    not {deadlocks.router, analysis.router, dashboards.router} <= MOUNTED,
    reason="the locks domain does not mount the deadlock, analysis and dashboard routers yet",
)

INSTANCE = "pgi-0123456789ab"


def _event(
    at: datetime, severity: str, frequency: int, pattern: str = "update orders / update payments"
) -> HistoryRecord:
    event = DeadlockEvent(
        deadlock_id=f"dl-{int(at.timestamp())}", target_id=INSTANCE, database_name="shop",
        deadlock_timestamp=at.isoformat(), involved_sessions=[101, 102],
        involved_queries=["UPDATE payments SET amount = 1 WHERE id = 1", "UPDATE orders SET total = 1 WHERE id = 1"],
        involved_users=["shop_app"], deadlock_victim_pid=101, deadlock_resolution="process 101 was cancelled",
        deadlock_duration=1000.5, affected_tables=["payments", "orders"], lock_types_involved=["ShareLock on transactionid"],
        frequency_score=frequency, prevention_suggestion="both transactions update orders and payments in opposite orders",
        business_impact="one transaction rolled back", recovery_time=None, data_consistency_affected=False,
        manual_intervention_required=frequency >= 3, severity=severity, pattern=pattern, pattern_id=pattern[:8],  # type: ignore[arg-type]
        deadlock_graph=DeadlockGraph(nodes=[], edges=[]), unavailable={"recoveryTime": "not logged"},
    )  # fmt: skip
    data = {k: v for k, v in event.to_record().items() if k != "target_id"}
    return HistoryRecord("deadlocks", INSTANCE, "acme", at, data)


@pytest.fixture
def stored(fake_ports: Any) -> datetime:
    fake_ports.store.create("instance", {
        "id": INSTANCE, "tenant_id": "acme", "name": "shop-db", "status": "stopped",
        "created_at": "2026-01-01T00:00:00Z",
    })  # fmt: skip
    now = datetime.now(UTC)
    fake_ports.history.append("deadlocks", [
        _event(now - timedelta(hours=3), "LOW", 1), _event(now - timedelta(hours=2), "MEDIUM", 2),
        _event(now - timedelta(minutes=30), "HIGH", 3),
    ])  # fmt: skip
    return now


def test_deadlocks_are_listed_newest_first_with_their_summary(call: Any, stored: datetime) -> None:
    status, body = call("GET", f"/api/v1/locks/deadlocks?targetId={INSTANCE}", role="viewer")
    assert status == 200, body
    assert [d["frequencyScore"] for d in body["deadlocks"]] == [3, 2, 1]
    first = body["deadlocks"][0]
    assert first["deadlockVictimPid"] == 101 and first["involvedSessions"] == [101, 102]
    assert first["targetId"] == INSTANCE and first["unavailable"] == {"recoveryTime": "not logged"}
    assert body["summary"] == {
        "totalDeadlocks": 3, "criticalDeadlocks": 0, "averageResolutionTime": 1000.5,
        "mostFrequentPattern": "update orders / update payments",
        "preventionRecommendations": ["both transactions update orders and payments in opposite orders"],
    }  # fmt: skip
    assert body["pagination"]["totalItems"] == 3


def test_filters_time_range_and_pages(call: Any, stored: datetime) -> None:
    status, body = call("GET", "/api/v1/locks/deadlocks?tenantId=acme&severity=MEDIUM")
    assert status == 200 and [d["severity"] for d in body["deadlocks"]] == ["MEDIUM"], body
    status, body = call("GET", "/api/v1/locks/deadlocks?includeResolved=false")
    assert status == 200 and [d["frequencyScore"] for d in body["deadlocks"]] == [3], body
    status, body = call("GET", "/api/v1/locks/deadlocks?timeRange=90m")
    assert status == 200 and body["summary"]["totalDeadlocks"] == 1, body
    status, body = call("GET", "/api/v1/locks/deadlocks?pageSize=2&page=2")
    assert status == 200 and len(body["deadlocks"]) == 1 and body["pagination"]["hasPrevious"], body


def test_bad_input_and_other_tenants(call: Any, stored: datetime) -> None:
    assert call("GET", "/api/v1/locks/deadlocks?severity=HUGE")[0] == 422
    assert (
        call("GET", "/api/v1/locks/deadlocks?timeRange=2026-12-02T00:00:00Z/2026-12-01T00:00:00Z")[0] == 422
    )
    assert call("GET", f"/api/v1/locks/deadlocks?targetId={INSTANCE}", tenant="globex")[0] == 404
    assert call("GET", "/api/v1/locks/deadlocks?tenantId=globex")[0] == 404
    assert call("GET", "/api/v1/locks/deadlocks", role="user")[0] == 403
    status, body = call("GET", "/api/v1/locks/deadlocks", tenant="globex")
    assert status == 200 and body["deadlocks"] == [], body
    # detect reads a server's log and names its tables inside it: a stopped one is a 409.
    status, body = call("POST", f"/api/v1/locks/deadlocks/detect?targetId={INSTANCE}")
    assert status == 409 and body["error"]["details"] == {"status": "stopped"}, body
    status, body = call("POST", "/api/v1/locks/deadlocks/detect")  # nothing running in scope
    assert status == 200 and body["deadlockCount"] == 0 and body["targetsScanned"] == [], body


def test_analysis_of_the_history(call: Any, stored: datetime) -> None:
    status, body = call(
        "GET", f"/api/v1/locks/analysis?analysisType=HISTORICAL&targetId={INSTANCE}&periodHours=4"
    )
    assert status == 200, body
    a = body["analysis"]
    assert a["deadlockEvents"] == 3 and a["mostContendedTable"] in ("orders", "payments")
    assert a["contentiionHotspots"][0]["resourceType"] == "TABLE" and a["trendDirection"] in (
        "STABLE",
        "DEGRADING",
    )
    assert {t["metric"] for t in body["trends"]} >= {"contentionEvents", "deadlocks", "averageWaitTime"}
    assert any("opposite orders" in r for r in body["recommendations"])
    assert call("GET", f"/api/v1/locks/analysis?targetId={INSTANCE}")[0] == 422  # analysisType is required
    assert call("GET", "/api/v1/locks/analysis?analysisType=SOMETIME")[0] == 422
    assert call("GET", "/api/v1/locks/analysis?analysisType=TREND&timeRange=1h&periodHours=2")[0] == 422


def test_dashboards(call: Any, stored: datetime) -> None:
    status, body = call(
        "GET", "/api/v1/locks/dashboard/historical?timeRange=6h&aggregation=HOUR&tenantId=acme"
    )
    assert status == 200, body
    assert sum(p["value"] for p in body["metrics"]["deadlockEvents"]) == 3
    assert (
        set(body["trends"]) == {"lockActivityTrend", "blockingTrend", "efficiencyTrend"} and body["insights"]
    )
    assert call("GET", "/api/v1/locks/dashboard/historical?timeRange=6h")[0] == 422  # aggregation is required
    assert call("GET", "/api/v1/locks/dashboard/historical?aggregation=DAY")[0] == 422  # so is timeRange
    status, body = call("GET", "/api/v1/locks/dashboard/realtime?tenantId=acme", role="viewer")
    assert status == 200, body
    assert body["overview"]["activeLocks"] == 0 and body["performanceMetrics"]["lockThroughput"] is None
    assert [d["frequencyScore"] for d in body["recentDeadlocks"]] == [3, 2, 1]
    assert [a["alertType"] for a in body["alerts"]] == ["DEADLOCK"]  # the one of the last hour
