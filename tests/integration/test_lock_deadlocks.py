"""Deadlocks, lock timeouts and long lock waits found in a real PostgreSQL 15 server's log,
recorded in the DynamoDB history store (moto server), and read back by the locks domain.

The services run for real on top of the local engine and the SQL seam; the metadata store
is the in-memory fake. Tests run in file order on one server.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.adapters.engines.local.sql import LocalSqlTarget
from pgfleet.core.auth import Principal
from pgfleet.core.errors import NotFound
from pgfleet.core.models import utcnow_iso
from pgfleet.core.paging import PageQuery
from pgfleet.domains.instances import service as instances
from pgfleet.domains.locks import deadlock_scan, deadlocks, service
from pgfleet.domains.locks.deadlock_models import DeadlockDetectionResponse
from tests.helpers import free_port, scratch_home, wait_for
from tests.integration.test_history_store import _aws_settings, aws  # noqa: F401 (the moto fixture)
from tests.unit.fakes import FakePorts

pytestmark = pytest.mark.skipif("15" not in local_pg.installed_binaries(), reason="needs PostgreSQL 15")

HOST = "127.0.0.1"
APP_PASSWORD = secrets.token_urlsafe(16)
DEAD_ETCD = "http://127.0.0.1:9"  # no cluster here
READER = Principal(sub="reader", tenant_id="acme", roles=("viewer",), permissions=frozenset({"locks:read"}))
OTHER = Principal(sub="other", tenant_id="globex", roles=("viewer",), permissions=frozenset({"locks:read"}))


@pytest.fixture(scope="module")
def ports(aws: str) -> Iterator[FakePorts]:  # noqa: F811
    from pgfleet.adapters.bootstrap import ensure_resources
    from pgfleet.adapters.history import DynamoDBHistoryStore

    with scratch_home("pgfleet-dl-") as home:
        with _aws_settings(aws, home, PGFLEET_HISTORY_TABLE="pgfleet-history-dl") as settings:
            ensure_resources(settings)
            fake = FakePorts(home)
            engine = LocalPostgresEngine(home / "data", host=HOST)
            fake.engine = engine  # type: ignore[assignment]
            fake.sql = LocalSqlTarget(engine, LocalPatroniEngine(home / "data", DEAD_ETCD, host=HOST))
            fake.history = DynamoDBHistoryStore(settings.history_table_name)  # type: ignore[assignment]
            yield fake


@pytest.fixture(scope="module")
def instance(ports: FakePorts) -> Iterator[dict[str, Any]]:
    iid = f"pgi-{secrets.token_hex(6)}"
    now = utcnow_iso()
    record = {
        "id": iid, "tenant_id": "acme", "name": "shop-db", "status": "running", "status_reason": "",
        "desired_state": "running", "version": "15", "cpu": 1, "memory": 256, "storage": 2,
        "endpoint": {"host": HOST, "port": free_port()}, "database": "shop", "username": "shop_app",
        "created_at": now, "updated_at": now, "operation_id": None,
    }  # fmt: skip
    ports.store.create("instance", record)
    spec = instances.server_spec(record)
    ports.engine.provision(spec)
    ports.engine.start(spec)
    try:
        ports.engine.ensure_database(iid, "shop", "shop_app", APP_PASSWORD)
        with _connect(record) as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total int NOT NULL)")
            conn.execute("CREATE TABLE payments (id int PRIMARY KEY, amount int NOT NULL)")
            conn.execute("INSERT INTO orders VALUES (1, 10), (2, 20)")
            conn.execute("INSERT INTO payments VALUES (1, 10), (2, 20)")
        yield record
    finally:
        ports.engine.destroy(iid)


def _connect(instance: dict[str, Any], application: str = "shop") -> psycopg.Connection:
    return psycopg.connect(
        host=HOST, port=instance["endpoint"]["port"], user="shop_app", password=APP_PASSWORD, dbname="shop",
        application_name=application, connect_timeout=3,
    )  # fmt: skip


def _deadlock(instance: dict[str, Any], first: list[str], second: list[str]) -> list[BaseException]:
    """Two transactions: A runs first[0], B runs second[0], then A runs first[1] (and waits
    on B) while B runs second[1] (and closes the cycle). Returns the errors they got."""
    a, b = _connect(instance, "checkout"), _connect(instance, "billing")
    errors: list[BaseException] = []

    def run(conn: psycopg.Connection, statement: str) -> None:
        try:
            conn.execute(statement)  # type: ignore[arg-type]
            conn.commit()
        except psycopg.Error as exc:
            errors.append(exc)
            conn.rollback()

    try:
        a.execute(first[0])  # type: ignore[arg-type]
        b.execute(second[0])  # type: ignore[arg-type]
        waiter = threading.Thread(target=run, args=(a, first[1]))
        waiter.start()
        wait_for(lambda: _waiting(instance), 5, 0.05, "A waiting on B")
        run(b, second[1])
        waiter.join(10)
    finally:
        a.close()
        b.close()
    return errors


def _waiting(instance: dict[str, Any]) -> bool:
    with _connect(instance, "probe") as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()
    return bool(row and row[0])


def _detect(ports: FakePorts, principal: Principal = READER, **scope: Any) -> DeadlockDetectionResponse:
    found = service.targets(ports, principal, scope.get("target_id"), scope.get("tenant_id"))  # type: ignore[arg-type]
    return DeadlockDetectionResponse.model_validate(deadlock_scan.detect(ports, found))  # type: ignore[arg-type]


def _eventually(check: Callable[[], DeadlockDetectionResponse], what: str) -> DeadlockDetectionResponse:
    """The logging collector writes a moment after the backend: detect until it has written."""
    found: list[DeadlockDetectionResponse] = []

    def attempt() -> bool:
        result = check()
        found.append(result)
        return result.deadlock_count > 0 or result.lock_timeouts_found > 0 or result.lock_waits_found > 0

    wait_for(attempt, 10, 0.2, what)
    return found[-1]


# --- the managed settings --------------------------------------------------------------------


def test_managed_servers_log_lock_waits_and_detect_deadlocks_after_1s(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    with ports.sql.session(instance["id"]) as session:
        assert session.fetch_all(
            "SELECT name, setting, unit FROM pg_catalog.pg_settings"
            " WHERE name IN ('log_lock_waits', 'deadlock_timeout') ORDER BY name"
        ) == [("deadlock_timeout", "1000", "ms"), ("log_lock_waits", "on", None)]


# --- a deadlock on purpose -------------------------------------------------------------------


def test_a_deadlock_is_detected_with_both_queries_the_victim_and_the_graph(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    first_scan = _detect(ports, target_id=instance["id"])  # the start-up lines: no deadlock yet
    assert first_scan.deadlock_count == 0 and first_scan.targets_scanned == [instance["id"]]
    errors = _deadlock(
        instance,
        [
            "UPDATE orders SET total = total + 1 WHERE id = 1",
            "UPDATE payments SET amount = amount + 1 WHERE id = 1",
        ],
        [
            "UPDATE payments SET amount = amount + 5 WHERE id = 1",
            "UPDATE orders SET total = total + 5 WHERE id = 1",
        ],
    )
    assert len(errors) == 1 and isinstance(errors[0], psycopg.errors.DeadlockDetected)

    result = _eventually(lambda: _detect(ports, target_id=instance["id"]), "the deadlock in the log")
    assert result.deadlocks_detected and result.deadlock_count == 1
    event = result.deadlocks[0]
    assert event.target_id == instance["id"] and event.database_name == "shop"
    assert len(event.involved_sessions) == 2 and event.deadlock_victim_pid in event.involved_sessions
    assert sorted(event.involved_queries) == [
        "UPDATE orders SET total = total + 5 WHERE id = 1",
        "UPDATE payments SET amount = amount + 1 WHERE id = 1",
    ]
    # The victim is the session that waited first (its deadlock_timeout ran out first): A.
    victim_query = event.involved_queries[event.involved_sessions.index(event.deadlock_victim_pid)]
    assert victim_query == "UPDATE payments SET amount = amount + 1 WHERE id = 1"
    assert event.involved_users == ["shop_app"]
    assert set(event.affected_tables) == {"orders", "payments"}
    assert event.lock_types_involved == ["ShareLock on transactionid"]
    assert event.deadlock_duration is not None and 900 <= event.deadlock_duration < 5000
    assert event.frequency_score == 1 and event.severity == "LOW" and not event.manual_intervention_required
    assert event.pattern == "update orders / update payments"
    assert (
        event.prevention_suggestion.startswith(
            "both transactions update orders and payments in opposite orders"
        )
        and "take locks in a consistent order, e.g. always orders before payments"
        in event.prevention_suggestion
    )
    graph = event.deadlock_graph
    assert {n.pid for n in graph.nodes} == set(event.involved_sessions)
    assert [n.pid for n in graph.nodes if n.victim] == [event.deadlock_victim_pid]
    assert {(e.source, e.target) for e in graph.edges} == {
        (event.involved_sessions[0], event.involved_sessions[1]),
        (event.involved_sessions[1], event.involved_sessions[0]),
    }
    assert {e.table_name for e in graph.edges} == {"orders", "payments"}
    assert "recoveryTime" in event.unavailable  # B waited less than deadlock_timeout
    assert not event.data_consistency_affected and "rolled back" in event.business_impact


def test_a_second_detect_finds_nothing_new(ports: FakePorts, instance: dict[str, Any]) -> None:
    again = _detect(ports, target_id=instance["id"])
    assert again.deadlock_count == 0 and not again.deadlocks_detected and again.deadlocks == []


def test_the_same_pattern_again_raises_its_frequency(ports: FakePorts, instance: dict[str, Any]) -> None:
    errors = _deadlock(
        instance,
        [
            "UPDATE orders SET total = total + 1 WHERE id = 2",
            "UPDATE payments SET amount = amount + 1 WHERE id = 2",
        ],
        [
            "UPDATE payments SET amount = amount + 7 WHERE id = 2",
            "UPDATE orders SET total = total + 7 WHERE id = 2",
        ],
    )
    assert len(errors) == 1
    result = _eventually(lambda: _detect(ports, tenant_id="acme"), "the second deadlock in the log")
    (event,) = result.deadlocks
    assert event.frequency_score == 2 and event.severity == "MEDIUM"
    assert event.pattern == "update orders / update payments"


def test_the_listing_reads_the_history_with_its_summary_and_scope(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    now = datetime.now(UTC)
    listing = deadlocks.history(
        ports, READER, instance["id"], None, None, now - timedelta(hours=1), now + timedelta(seconds=1),  # type: ignore[arg-type]
        severity=None, include_resolved=True, query=PageQuery(page=1, page_size=20),
    )  # fmt: skip
    assert listing.summary.total_deadlocks == 2 and listing.pagination.total_items == 2
    assert [e.frequency_score for e in listing.deadlocks] == [2, 1]  # newest first
    assert listing.summary.most_frequent_pattern == "update orders / update payments"
    assert listing.summary.prevention_recommendations[0].startswith(
        "both transactions update orders and payments"
    )
    assert (
        listing.summary.average_resolution_time is not None and listing.summary.average_resolution_time >= 900
    )
    medium = deadlocks.history(
        ports, READER, None, "acme", None, now - timedelta(hours=1), now + timedelta(seconds=1),  # type: ignore[arg-type]
        severity="MEDIUM", include_resolved=True, query=PageQuery(page=1, page_size=20),
    )  # fmt: skip
    assert [e.frequency_score for e in medium.deadlocks] == [2]
    unresolved = deadlocks.history(
        ports, READER, instance["id"], None, None, now - timedelta(hours=1), now + timedelta(seconds=1),  # type: ignore[arg-type]
        severity=None, include_resolved=False, query=PageQuery(page=1, page_size=20),
    )  # fmt: skip
    assert unresolved.deadlocks == []  # twice in 7 days is not yet a pattern to fix by hand
    with pytest.raises(NotFound):  # another tenant's server
        deadlocks.history(
            ports, OTHER, instance["id"], None, None, now - timedelta(hours=1), now,  # type: ignore[arg-type]
            severity=None, include_resolved=True, query=PageQuery(page=1, page_size=20),
        )  # fmt: skip
    theirs = deadlocks.history(
        ports, OTHER, None, None, None, now - timedelta(hours=1), now + timedelta(seconds=1),  # type: ignore[arg-type]
        severity=None, include_resolved=True, query=PageQuery(page=1, page_size=20),
    )  # fmt: skip
    assert theirs.deadlocks == [] and theirs.summary.total_deadlocks == 0


# --- lock timeouts and long waits ------------------------------------------------------------


def test_lock_timeouts_and_long_waits_are_recorded(ports: FakePorts, instance: dict[str, Any]) -> None:
    holder = _connect(instance, "migration")
    try:
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        with _connect(instance, "reports") as impatient:
            impatient.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                impatient.execute("SELECT count(*) FROM orders")
        patient = _connect(instance, "reports")
        reader = threading.Thread(target=lambda: patient.execute("SELECT count(*) FROM payments, orders"))
        reader.start()
        time.sleep(1.4)  # past deadlock_timeout: the wait is logged, then its end
        holder.rollback()
        reader.join(10)
        patient.close()
    finally:
        holder.close()
    found: list[DeadlockDetectionResponse] = []

    def both() -> bool:
        found.append(_detect(ports, target_id=instance["id"]))
        return sum(r.lock_timeouts_found for r in found) >= 1 and sum(r.lock_waits_found for r in found) >= 1

    wait_for(both, 10, 0.2, "the lock timeout and the long wait in the log")
    now = datetime.now(UTC)
    (timeout,) = service.history_of(
        ports, deadlock_scan.TIMEOUTS, instance["id"], None, now - timedelta(minutes=5), now
    )  # type: ignore[arg-type]
    assert timeout.data["table_name"] == "orders" and timeout.data["user_name"] == "shop_app"
    assert timeout.data["application_name"] == "reports"
    (wait,) = service.history_of(
        ports, deadlock_scan.WAITS, instance["id"], None, now - timedelta(minutes=5), now
    )  # type: ignore[arg-type]
    assert wait.data["table_name"] == "orders" and wait.data["lock_mode"] == "AccessShareLock"
    assert wait.data["lock_type"] == "relation" and wait.data["wait_ms"] >= 1000


# --- analysis over captures ------------------------------------------------------------------


def _capture(
    instance: dict[str, Any], at: datetime, waiting: list[dict[str, Any]], blockers: list[dict[str, Any]]
) -> Any:
    from pgfleet.ports.history import HistoryRecord

    granted = 40 + 3 * len(waiting)
    data = {
        "capture_id": f"cap-{int(at.timestamp())}", "node": None, "total_locks": granted + len(waiting),
        "granted_locks": granted, "waiting_locks": len(waiting), "blocking_sessions": len(blockers),
        "blocked_sessions": len(waiting), "critical_sessions": 0, "waiting": waiting, "blockers": blockers,
        "tree": [{"pid": b["pid"], "children": [{"pid": w["pid"], "children": []} for w in waiting]} for b in blockers],
    }  # fmt: skip
    return HistoryRecord(stream="locks", target_id=instance["id"], tenant_id="acme", at=at, data=data)


def _hour_of_captures(instance: dict[str, Any], now: datetime) -> list[Any]:
    """One capture a minute over the last hour: a batch job idle in its transaction holds rows
    of orders while web sessions wait for them, each wait seen in three captures (2 waits in
    the first half hour, 6 in the second); a report waits 10 s for payments three times."""
    start = now - timedelta(minutes=60)
    orders_waits = {0: 9001, 15: 9002, 30: 9003, 35: 9004, 40: 9005, 45: 9006, 50: 9007, 55: 9008}
    records = []
    for minute in range(60):
        at = start + timedelta(minutes=minute, seconds=20)
        waiting, blockers = [], []
        for began, pid in orders_waits.items():
            if began <= minute < began + 3:
                waiting.append({
                    "pid": pid, "user_name": "web", "application_name": "shop-web", "database": "shop",
                    "lock_type": "transactionid", "lock_mode": "ShareLock", "schema_name": None, "table_name": None,
                    "wait_seconds": 30.0 + 60 * (minute - began), "blocking_pids": [4242],
                    "query": "UPDATE orders SET total = total + 1 WHERE id = 7",
                })  # fmt: skip
        if minute in (5, 25, 52):
            waiting.append({
                "pid": 7000 + minute, "user_name": "reports", "application_name": "bi", "database": "shop",
                "lock_type": "relation", "lock_mode": "AccessShareLock", "schema_name": "public",
                "table_name": "payments", "wait_seconds": 10.0, "blocking_pids": [4343], "query": "SELECT sum(amount) FROM payments",
            })  # fmt: skip
            blockers.append({"pid": 4343, "user_name": "migrator", "application_name": "alembic", "database": "shop",
                             "state": "active", "root": True, "blocked_count": 1, "blocking_seconds": 10.0,
                             "severity": "MEDIUM", "query": "ALTER TABLE payments ADD COLUMN note text",
                             "locks_held": 3, "exclusive_locks_held": 1, "blocked_by": []})  # fmt: skip
        blocked = [w for w in waiting if w["blocking_pids"] == [4242]]
        if blocked:
            blockers.append({"pid": 4242, "user_name": "batch", "application_name": "nightly", "database": "shop",
                             "state": "idle in transaction", "root": True, "blocked_count": len(blocked),
                             "blocking_seconds": max(w["wait_seconds"] for w in blocked), "severity": "HIGH",
                             "query": "UPDATE orders SET total = 0 WHERE id > 0", "locks_held": 12,
                             "exclusive_locks_held": 4, "blocked_by": []})  # fmt: skip
        records.append(_capture(instance, at, waiting, blockers))
    return records


def test_historical_analysis_names_the_contended_table(ports: FakePorts, instance: dict[str, Any]) -> None:
    from pgfleet.domains.locks import analysis

    now = datetime.now(UTC)
    ports.history.append("locks", _hour_of_captures(instance, now))
    evidence = analysis.gather(
        ports, READER, instance["id"], None, None, now - timedelta(hours=1), now + timedelta(seconds=5)
    )  # type: ignore[arg-type]
    result = analysis.analyze(ports, evidence, "HISTORICAL")  # type: ignore[arg-type]
    a = result.analysis
    assert a.captures_analyzed == 60 and a.targets_analyzed == [instance["id"]]
    assert a.most_contended_table == "orders"
    assert a.most_blocking_user == "batch" and a.most_blocked_user == "web"
    # 8 waits on orders (each counted once over its 3 sightings), 3 on payments, the long wait
    # the log timed, 2 deadlocks and 1 lock timeout from the tests above.
    assert a.deadlock_events == 2 and a.lock_timeout_events == 1
    assert a.total_lock_events == 8 + 3 + 1 + 2 + 1
    assert a.max_wait_time == 150_000 and a.blocking_events == 8 + 3
    assert a.peak_concurrent_locks == max(r.data["total_locks"] for r in _hour_of_captures(instance, now))
    assert 0 < a.lock_efficiency_score < 100 and 0 < a.performance_impact_score <= 100
    assert a.trend_direction == "DEGRADING"
    hot = a.contentiion_hotspots
    assert [h.resource_name for h in hot[:2]] == ["orders", "payments"] and hot[0].resource_type == "TABLE"
    assert hot[0].contention_score > 90 and "shorten the transactions" in hot[0].recommended_action
    assert any("idle_in_transaction_session_timeout" in r for r in result.recommendations)
    assert any("opposite orders" in r for r in result.recommendations)
    events = next(t for t in result.trends if t.metric == "contentionEvents")
    assert events.trend == "INCREASING" and len(events.time_points) >= 12
    assert sum(p.value for p in events.time_points) == a.total_lock_events


def test_current_analysis_sees_a_live_wait(ports: FakePorts, instance: dict[str, Any]) -> None:
    from pgfleet.domains.locks import analysis

    holder, waiter = _connect(instance, "batch"), _connect(instance, "web")
    try:
        holder.execute("UPDATE orders SET total = total + 1 WHERE id = 2")
        thread = threading.Thread(
            target=lambda: waiter.execute("UPDATE orders SET total = total + 3 WHERE id = 2")
        )
        thread.start()
        wait_for(lambda: _waiting(instance), 5, 0.05, "a session waiting")
        now = datetime.now(UTC)
        evidence = analysis.gather(
            ports, READER, instance["id"], None, None, now - timedelta(seconds=30), now, live=True
        )  # type: ignore[arg-type]
        result = analysis.analyze(ports, evidence, "CURRENT")  # type: ignore[arg-type]
    finally:
        holder.rollback()
        thread.join(10)
        waiter.rollback()
        holder.close()
        waiter.close()
    a = result.analysis
    assert a.captures_analyzed == 1 and a.most_contended_table == "orders"
    assert a.most_blocked_user == "shop_app" and a.most_blocking_user == "shop_app"
    assert a.blocking_events == 1 and a.total_lock_events >= 1


# --- dashboards ------------------------------------------------------------------------------


def test_realtime_dashboard_shows_a_blocker_now_and_the_recent_deadlocks(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    from pgfleet.domains.locks import analysis, dashboards

    holder, waiter = _connect(instance, "batch"), _connect(instance, "web")
    try:
        holder.execute("UPDATE orders SET total = total + 1 WHERE id = 1")
        thread = threading.Thread(
            target=lambda: waiter.execute("UPDATE orders SET total = total + 3 WHERE id = 1")
        )
        thread.start()
        wait_for(lambda: _waiting(instance), 5, 0.05, "a session waiting")
        now = datetime.now(UTC)
        found = service.targets(ports, READER, instance["id"], None)  # type: ignore[arg-type]
        snapshots = service.snapshots(ports, found)  # type: ignore[arg-type]
        evidence = analysis.gather(ports, READER, instance["id"], None, None, now - timedelta(hours=24), now)  # type: ignore[arg-type]
        evidence.captures += [analysis.capture_of_snapshot(s) for s in snapshots]
        evidence.end = max(evidence.end, *(c.at + timedelta(milliseconds=1) for c in evidence.captures))
        board = dashboards.realtime(evidence, snapshots, now)
    finally:
        holder.rollback()
        thread.join(10)
        waiter.rollback()
        holder.close()
        waiter.close()
    assert board.overview.waiting_locks >= 1 and board.overview.blocking_sessions == 1
    assert board.overview.active_locks >= 2 and 0 <= board.overview.system_efficiency <= 100
    assert board.top_contention[0].resource_name == "orders"
    assert [d.frequency_score for d in board.recent_deadlocks] == [2, 1]
    assert board.performance_metrics.lock_throughput is None
    assert board.performance_metrics.deadlock_rate == round(2 / 24, 3)
    assert board.performance_metrics.auto_resolution_rate == 0.0  # blocking episodes, none auto-resolved
    kinds = Counter(a.alert_type for a in board.alerts)
    assert kinds["DEADLOCK"] == 2 and kinds["CONTENTION"] == 1
    wire = board.model_dump(mode="json")
    assert {"timestamp", "overview", "topContention", "recentDeadlocks", "blockingSessionsAlert",
            "performanceMetrics", "alerts"} <= set(wire)  # fmt: skip
    assert set(wire["overview"]) >= {
        "activeLocks",
        "waitingLocks",
        "blockingSessions",
        "criticalSituations",
        "systemEfficiency",
    }


def test_historical_dashboard_per_hour(ports: FakePorts, instance: dict[str, Any]) -> None:
    from pgfleet.domains.locks import analysis, dashboards

    now = datetime.now(UTC)
    evidence = analysis.gather(ports, READER, None, "acme", None, now - timedelta(hours=3), now)  # type: ignore[arg-type]
    board = dashboards.historical(evidence, "HOUR")
    assert board.aggregation == "HOUR" and len(board.metrics.lock_activity) in (3, 4)
    assert sum(p.value for p in board.metrics.deadlock_events) == 2
    assert all(p.timestamp.endswith(":00:00Z") for p in board.metrics.blocking_events)
    assert sum(p.value for p in board.metrics.blocking_events) >= 11
    assert any("orders is the most contended table" in i for i in board.insights)
    wire = board.model_dump(mode="json")
    assert set(wire["metrics"]) == {
        "lockActivity",
        "blockingEvents",
        "deadlockEvents",
        "efficiencyScore",
        "performanceImpact",
    }
    assert set(wire["trends"]) == {"lockActivityTrend", "blockingTrend", "efficiencyTrend"}
    weekly = dashboards.historical(
        analysis.gather(ports, READER, None, "acme", None, now - timedelta(days=20), now), "WEEK"
    )  # type: ignore[arg-type]
    assert all(
        datetime.fromisoformat(p.timestamp.replace("Z", "+00:00")).weekday() == 0
        for p in weekly.metrics.lock_activity
    )
