"""Query analysis and safe EXPLAIN with the ports faked: what is refused (422 naming why),
how statements are rated and advised from their counters, the delta math of snapshots, and
the findings of a plan. A fake SqlTarget answers the pg_stat_statements reads and hands out
customer sessions that record how they were opened."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgfleet.domains import instances
from pgfleet.domains.performance import explain, queries, sql_queries, statements
from pgfleet.domains.performance.queries import Counters
from pgfleet.ports.history import HistoryRecord
from pgfleet.ports.sql import StatementCancelled

PGI = "pgi-0123456789ab"
OTHER = "pgi-00000000000f"
SLOW_SELECT = "SELECT * FROM public.orders o WHERE o.customer_id = $1 AND o.created_at > $2"


def _text(query: Any) -> str:
    return query if isinstance(query, str) else str(getattr(query, "_obj", None) or query)


class FakeSession:
    def __init__(self, target: FakeSql) -> None:
        self.target = target

    def execute(self, query: Any, params: Any = None) -> None:
        self.fetch_all(query, params)

    def fetch_one(self, query: Any, params: Any = None) -> tuple[Any, ...] | None:
        rows = self.fetch_all(query, params)
        return rows[0] if rows else None

    def fetch_all(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        text = query.as_string(None) if hasattr(query, "as_string") else str(query)
        self.target.sent.append((text, params))
        if text == sql_queries.STATEMENTS_SCHEMA:
            return [("pgfleet_stats",)]
        if text == sql_queries.SETTINGS:
            return [("4MB", "128MB", 8192)]
        if "pg_stat_statements_info" in text:
            return [(datetime(2026, 12, 1, tzinfo=UTC),)]
        if "pg_catalog.sum(s.total_exec_time)" in text:
            return [(sum(r[3] for r in self.target.rows), sum(r[2] for r in self.target.rows))]
        if 'FROM "pgfleet_stats".pg_stat_statements s' in text:
            return list(self.target.rows)
        if text == sql_queries.SESSION:
            return [(150000, "64kB", "app_user")]
        if text == sql_queries.RELATION_ROWS:
            return [("orders", 50_000.0)]
        if text.startswith("EXPLAIN"):
            if self.target.cancel:
                raise StatementCancelled("statement on server x cancelled: statement_timeout of 100 ms")
            return (
                [(self.target.plan,)] if "FORMAT JSON" in text else [("Seq Scan on orders",), ("  Filter",)]
            )
        raise AssertionError(f"unexpected statement {text[:80]}")


class FakeSql:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.sent: list[tuple[str, Any]] = []
        self.opened: list[dict[str, Any]] = []
        self.plan: Any = PLAN
        self.cancel = False

    @contextmanager
    def session(self, server_id: str, **kwargs: Any) -> Iterator[FakeSession]:
        yield FakeSession(self)

    @contextmanager
    def customer_session(self, server_id: str, uri: str, **kwargs: Any) -> Iterator[FakeSession]:
        self.opened.append({"server_id": server_id, "uri": uri, **kwargs})
        yield FakeSession(self)


def row(qid: str, query: str, calls: int, total: float, rows: int = 10, hit: int = 100, read: int = 0,
        temp: int = 0, db: str = "app") -> tuple[Any, ...]:  # fmt: skip
    return (qid, query, calls, total, 0.1, total, rows, hit, read, temp, db, "app_user", 5, 10)


PLAN = [{
    "Plan": {
        "Node Type": "Sort", "Total Cost": 5000.0, "Plan Rows": 10, "Actual Rows": 900, "Actual Loops": 1,
        "Actual Total Time": 90.0, "Sort Method": "external merge", "Sort Space Used": 3000, "Sort Space Type": "Disk",
        "Plans": [{
            "Node Type": "Seq Scan", "Relation Name": "orders", "Alias": "o", "Total Cost": 4000.0, "Plan Rows": 900,
            "Actual Rows": 900, "Actual Loops": 1, "Actual Total Time": 60.0, "Filter": "(customer_id = 7)",
            "Rows Removed by Filter": 49_100,
        }],
    },
    "Planning Time": 0.2, "Execution Time": 100.0,
}]  # fmt: skip


@pytest.fixture
def sql(fake_ports: Any) -> FakeSql:
    fake = FakeSql()
    fake_ports.sql = fake
    for rid, tenant in ((PGI, "acme"), (OTHER, "globex")):
        record = {
            "id": rid, "tenant_id": tenant, "name": rid, "status": "running", "created_at": "2026-01-01T00:00:00Z",
            "username": "app_user", "database": "app", "endpoint": {"host": "127.0.0.1", "port": 6543},
        }  # fmt: skip
        fake_ports.store.create("instance", record)
        fake_ports.secrets.put(instances.secret_name(record), "s3cret pw")
    return fake


# --- statements.py ----------------------------------------------------------------------------


def test_statement_kinds_and_single_statement() -> None:
    assert statements.statement_kind("select 1;") == "SELECT"
    assert statements.statement_kind("COMMIT") == "COMMIT"
    assert statements.statement_kind("create index on t (a)") == "CREATE INDEX"
    assert statements.statement_kind("VACUUM t") == "VACUUM"
    assert statements.statement_kind("explain select 1") == "EXPLAIN"
    with pytest.raises(Exception, match="2 statements"):
        statements.single_statement("select 1; delete from t")
    with pytest.raises(Exception, match="does not parse"):
        statements.single_statement("selec 1")
    node = statements.single_statement("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")
    assert statements.writes(node) and not statements.writes(statements.single_statement("select 1"))
    cols = statements.filter_columns(statements.single_statement(SLOW_SELECT))
    assert [(c.relation, c.column, c.operator) for c in cols] == [
        ("public.orders", "customer_id", "="), ("public.orders", "created_at", ">"),
    ]  # fmt: skip


# --- POST /queries/analyze --------------------------------------------------------------------

ANALYZE = "/api/v1/performance/queries/analyze"


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("SELECT 1; DELETE FROM orders", "2 statements"),
        ("COMMIT", "COMMIT"),
        ("BEGIN", "BEGIN"),
        ("DROP TABLE orders", "DROP"),
        ("CREATE TABLE x (a int)", "CREATE TABLE"),
        ("TRUNCATE orders", "TRUNCATE"),
        ("GRANT SELECT ON orders TO public", "GRANT"),
        ("VACUUM orders", "VACUUM"),
        ("SET work_mem = '1GB'", "SET"),
        ("COPY orders TO STDOUT", "COPY"),
        ("EXPLAIN SELECT 1", "EXPLAIN"),
        ("SELEC 1", "does not parse"),
    ],
)
def test_refused_statements_are_422_naming_why(call: Any, sql: FakeSql, query: str, said: str) -> None:
    status, body = call("POST", ANALYZE, {"targetId": PGI, "queryText": query})
    assert status == 422, body
    assert said in body["error"]["message"]
    assert sql.opened == []  # nothing reached a server


def test_placeholders_and_parameters_must_agree(call: Any, sql: FakeSql) -> None:
    status, body = call("POST", ANALYZE, {"targetId": PGI, "queryText": SLOW_SELECT, "parameters": [7]})
    assert status == 422 and "2 placeholders" in body["error"]["message"]
    status, body = call("POST", ANALYZE, {"targetId": PGI, "queryText": SLOW_SELECT,
                                          "explainOptions": {"analyze": True}})  # fmt: skip
    assert status == 422 and "give 2 parameters" in body["error"]["message"]
    status, body = call(
        "POST", ANALYZE, {"targetId": PGI, "queryText": "select 1", "statementTimeoutMs": 60_000}
    )
    assert status == 422


def test_explain_runs_as_the_app_role_with_findings(call: Any, sql: FakeSql) -> None:
    status, body = call("POST", ANALYZE, {
        "targetId": PGI, "queryText": SLOW_SELECT, "parameters": [7, "2026-01-01"],
        "explainOptions": {"analyze": True, "buffers": True, "timing": True, "format": "JSON"},
    })  # fmt: skip
    assert status == 200, body
    (opened,) = sql.opened
    assert opened["uri"].startswith("postgresql://app_user:s3cret%20pw@127.0.0.1:6543/app")
    assert opened["statement_timeout_ms"] == 5_000
    explained = [(t, p) for t, p in sql.sent if t.startswith("EXPLAIN")]
    assert explained == [
        (f"EXPLAIN (FORMAT JSON, ANALYZE true, TIMING true, BUFFERS true)\n{SLOW_SELECT}", [7, "2026-01-01"])
    ]
    plan = body["executionPlan"]
    kinds = {(f["findingType"], f["nodeType"]) for f in plan["findings"]}
    assert kinds == {
        ("ROW_ESTIMATE", "Sort"), ("DISK_SPILL", "Sort"), ("SLOW_NODE", "Seq Scan"),
        ("ROWS_REMOVED_BY_FILTER", "Seq Scan"), ("SEQ_SCAN_LARGE_TABLE", "Seq Scan"),
    }  # fmt: skip
    seq = next(f for f in plan["findings"] if f["findingType"] == "SEQ_SCAN_LARGE_TABLE")
    assert seq["relation"] == "orders" and "50000 rows" in seq["detail"]
    index = [s for s in body["optimizationSuggestions"] if s["type"] == "INDEX"]
    assert (
        index[0]["sqlSuggestion"]
        == 'CREATE INDEX CONCURRENTLY ON "public"."orders" ("customer_id", "created_at");'
    )
    spill = next(s for s in body["optimizationSuggestions"] if s["type"] == "CONFIGURATION")
    assert spill["sqlSuggestion"] == "SET work_mem = '6MB';"
    assert body["performance"]["executionTime"] == 100.0 and body["roleName"] == "app_user"
    assert plan["plan"] == PLAN and plan["analyzed"] is True


def test_text_format_without_analyze_is_a_second_explain(call: Any, sql: FakeSql) -> None:
    status, body = call("POST", ANALYZE, {"targetId": PGI, "queryText": "SELECT * FROM orders",
                                          "explainOptions": {"format": "TEXT"}})  # fmt: skip
    assert status == 200, body
    assert body["executionPlan"]["format"] == "TEXT"
    assert body["executionPlan"]["plan"] == "Seq Scan on orders\n  Filter"
    assert [t.split("\n")[0] for t, _ in sql.sent if t.startswith("EXPLAIN")] == [
        "EXPLAIN (FORMAT JSON)", "EXPLAIN (FORMAT TEXT)",
    ]  # fmt: skip
    status, body = call("POST", ANALYZE, {"targetId": PGI, "queryText": "SELECT * FROM orders",
                                          "explainOptions": {"format": "XML", "analyze": True}})  # fmt: skip
    assert body["executionPlan"]["format"] == "JSON" and "ran once" in body["executionPlan"]["notes"][0]


def test_timeout_is_408_and_scope_is_404(call: Any, sql: FakeSql) -> None:
    sql.cancel = True
    status, body = call(
        "POST", ANALYZE, {"targetId": PGI, "queryText": "SELECT pg_sleep(1)", "statementTimeoutMs": 100}
    )
    assert status == 408 and "100 ms" in body["error"]["message"]
    status, _ = call("POST", ANALYZE, {"targetId": OTHER, "queryText": "SELECT 1"})
    assert status == 404  # another tenant's server
    status, _ = call("POST", ANALYZE, {"targetId": PGI, "queryText": "SELECT 1", "database": "nope"})
    assert status == 404


def test_delete_with_analyze_notes_the_rollback(call: Any, sql: FakeSql) -> None:
    sql.plan = [{"Plan": {"Node Type": "ModifyTable", "Operation": "Delete", "Total Cost": 1.0, "Plan Rows": 1,
                          "Actual Rows": 0, "Actual Loops": 1, "Actual Total Time": 0.1}, "Execution Time": 0.2}]  # fmt: skip
    status, body = call("POST", ANALYZE, {"targetId": PGI, "queryText": "DELETE FROM orders",
                                          "explainOptions": {"analyze": True}})  # fmt: skip
    assert status == 200, body
    assert "rolled back" in body["executionPlan"]["notes"][0]
    assert body["performance"]["rolledBack"] is True


def test_plan_findings_thresholds() -> None:
    quiet = {"Node Type": "Seq Scan", "Relation Name": "small", "Total Cost": 1.0, "Plan Rows": 5, "Actual Rows": 20,
             "Actual Loops": 1, "Actual Total Time": 1.0, "Rows Removed by Filter": 500}  # fmt: skip
    found = explain.plan_findings(
        quiet, analyzed=True, execution_ms=10.0, table_rows={"small": 520}, columns=[]
    )
    assert found.findings == []  # 4x off, 10 % of the time, 500 rows removed, a small table
    hashed = {
        "Node Type": "Hash",
        "Total Cost": 1.0,
        "Plan Rows": 1,
        "Hash Batches": 4,
        "Peak Memory Usage": 4096,
    }
    found = explain.plan_findings(hashed, analyzed=False, execution_ms=None, table_rows={}, columns=[])
    assert [f.finding_type for f in found.findings] == ["DISK_SPILL"]
    assert found.suggestions[0].sql_suggestion == "SET work_mem = '16MB';"


# --- GET /queries/analysis --------------------------------------------------------------------


def c(calls: int, total: float, **kw: Any) -> Counters:
    base: dict[str, Any] = {"query_id": "1", "query": SLOW_SELECT, "min_ms": 1.0, "max_ms": 9.0, "rows": calls,
                            "blks_hit": 0, "blks_read": 0, "temp_written": 0, "database": "app", "role": "app_user"}  # fmt: skip
    return Counters(**{**base, **kw, "calls": calls, "total_ms": total})


def test_rating_bands() -> None:
    assert queries.rating(c(100, 100 * 20.0), 0.01) == "POOR"  # PgHero's slow mark exactly
    assert queries.rating(c(99, 99 * 50.0), 0.01) == "GOOD"  # slow but rare
    assert queries.rating(c(100, 100 * 20.0), 0.25) == "CRITICAL"  # slow and a quarter of the time
    assert queries.rating(c(500, 500 * 150.0), 0.01) == "CRITICAL"
    assert queries.rating(c(10_000, 10_000 * 0.5), 0.12) == "GOOD"  # fast, but a big share
    assert queries.rating(c(10_000, 10_000 * 0.5), 0.01) == "EXCELLENT"


def test_suggestions_from_counters() -> None:
    settings = {"work_mem": "4MB", "shared_buffers": "128MB", "block_size": 8192}
    scan = c(200, 200 * 40.0, rows=200, blks_hit=200 * 1500, blks_read=200 * 500, temp_written=200 * 128)
    found = {s.type + ":" + (s.sql_suggestion or ""): s for s in queries.suggestions(scan, 0.3, settings)}
    index = found['INDEX:CREATE INDEX CONCURRENTLY ON "public"."orders" ("customer_id", "created_at");']
    assert index.priority == "CRITICAL" and index.estimated_improvement == pytest.approx(99.8)
    work_mem = found["CONFIGURATION:SET work_mem = '6MB';"]  # 1 MB per call spilled: 4 + 2 x 1
    assert work_mem.estimated_improvement == pytest.approx(round(100 * 128 / (2000 + 128), 1))
    assert "CONFIGURATION:" in found  # 25 % read from disk
    assert queries.suggestions(c(100, 100.0, rows=100, blks_hit=500), 0.01, settings) == []


def test_delta_math() -> None:
    old = c(100, 1000.0, rows=100, blks_hit=1000)
    assert queries.delta(old, c(150, 1600.0, rows=160, blks_hit=1500)) == c(
        50, 600.0, rows=60, blks_hit=500, min_ms=None, max_ms=None
    )
    reset = c(30, 90.0, rows=30)
    assert queries.delta(old, reset) == reset  # calls went down: counted from zero
    assert queries.delta(None, reset) == reset  # absent from the first snapshot
    assert queries.delta(old, old) is None  # did not run in between


def _snapshot(at: datetime, counters: list[Counters], reset: str = "r1") -> HistoryRecord:
    server = queries.ServerCounters(PGI, statements=counters, total_ms=sum(x.total_ms for x in counters),
                                    calls=sum(x.calls for x in counters), stats_reset=reset)  # fmt: skip
    return queries.snapshot_record(server, "acme", at)


def test_analysis_since_reset_sorted_paged_and_filtered(call: Any, sql: FakeSql) -> None:
    sql.rows = [
        row("11", SLOW_SELECT, 200, 200 * 40.0, rows=200, hit=200 * 2000),
        row("22", "SELECT 1", 100_000, 100_000 * 0.01),
        row("33", "UPDATE orders SET x = 1 WHERE id = $1", 50, 50 * 10.0),
    ]
    status, body = call(
        "GET", f"/api/v1/performance/queries/analysis?targetId={PGI}&sortBy=frequency&pageSize=2"
    )
    assert status == 200, body
    assert [q["queryHash"] for q in body["queries"]] == ["22", "11"]
    assert body["pagination"] == {"page": 1, "pageSize": 2, "totalItems": 3, "totalPages": 2, "hasNext": True,
                                  "hasPrevious": False}  # fmt: skip
    assert body["summary"]["source"] == "since_reset" and "last reset" in body["summary"]["notes"][0]
    slow = body["queries"][1]
    assert slow["performanceRating"] == "CRITICAL"  # 20 ms+ over 100+ calls, 8000 of 9500 ms
    assert slow["statistics"]["cacheHitRatio"] == 1.0 and slow["statistics"]["rowsExamined"] is None
    assert slow["optimizationSuggestions"][0]["type"] == "INDEX"
    status, body = call("GET", f"/api/v1/performance/queries/analysis?targetId={PGI}&sortBy=execution_time"
                               "&performanceRating=CRITICAL,POOR&minExecutions=100")  # fmt: skip
    assert [q["queryHash"] for q in body["queries"]] == ["11"]
    status, body = call("GET", "/api/v1/performance/queries/analysis?performanceRating=AWFUL")
    assert status == 422 and "AWFUL" in body["error"]["message"]
    status, body = call("GET", "/api/v1/performance/queries/analysis?sortBy=size")
    assert status == 422


def test_analysis_over_a_time_range_is_snapshot_deltas(call: Any, sql: FakeSql, fake_ports: Any) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    a, b = c(100, 1000.0, query_id="11"), c(1000, 10.0, query_id="22")
    fake_ports.history.append("statements", [
        _snapshot(now - timedelta(minutes=65), [a, b]),
        _snapshot(now - timedelta(minutes=35), [c(300, 5000.0, query_id="11"), c(1500, 15.0, query_id="22")]),
        _snapshot(now - timedelta(minutes=5), [c(500, 13_000.0, query_id="11"), c(1500, 15.0, query_id="22"),
                                               c(7, 70.0, query_id="33")]),
    ])  # fmt: skip
    status, body = call("GET", f"/api/v1/performance/queries/analysis?targetId={PGI}&timeRange=30m")
    assert status == 200, body
    got = {q["queryHash"]: q["statistics"] for q in body["queries"]}
    # From the snapshot just before the start (35 min ago) to the newest: "22" did not run.
    assert set(got) == {"11", "33"}
    assert got["11"]["totalExecutions"] == 200 and got["11"]["totalTime"] == 8000.0
    assert got["11"]["avgExecutionTime"] == 40.0 and got["11"]["minExecutionTime"] is None
    assert got["33"]["totalExecutions"] == 7  # new: from zero
    assert body["summary"]["source"] == "snapshots"
    assert body["queries"][0]["performanceRating"] == "CRITICAL"
    fake_ports.history.append("statements", [_snapshot(now - timedelta(minutes=1), [c(20, 400.0, query_id="11")],
                                                       reset="r2")])  # fmt: skip
    status, body = call("GET", f"/api/v1/performance/queries/analysis?targetId={PGI}&timeRange=30m")
    (only,) = body["queries"]  # reset in between: the newest counters from zero
    assert only["statistics"]["totalExecutions"] == 20
    empty = f"{(now - timedelta(hours=3)).isoformat()}/{(now - timedelta(hours=2)).isoformat()}".replace(
        "+00:00", "Z"
    )
    status, body = call("GET", f"/api/v1/performance/queries/analysis?targetId={PGI}&timeRange={empty}")
    assert body["queries"] == [] and "fewer than two snapshots" in body["summary"]["notes"][-1]


def test_snapshot_schedule_stores_one_record_per_running_server(sql: FakeSql, fake_ports: Any) -> None:
    sql.rows = [row("11", SLOW_SELECT, 200, 8000.0)]
    result = queries.scheduled_snapshot(fake_ports, {})
    assert result[0] == "statements snapshot of 2 servers"
    records = list(fake_ports.history.records.values())
    assert {r.target_id for r in records} == {PGI, OTHER}
    assert json.dumps(records[0].data) and records[0].data["statements"][0]["query_id"] == "11"
    assert records[0].data["stats_reset"] == "2026-12-01T00:00:00+00:00"


def test_a_tenant_database_runs_as_the_tenant_login_and_a_cluster_as_its_user(
    call: Any, sql: FakeSql, fake_ports: Any
) -> None:
    fake_ports.store.create("tenant", {
        "id": f"{PGI}:shop", "parent_id": PGI, "tenant_id": "acme", "name": "shop", "database_name": "shop",
        "user": "shop_user", "status": "active", "created_at": "2026-01-01T00:00:00Z",
    })  # fmt: skip
    fake_ports.secrets.put(f"tenants/{PGI}/shop", "tenant pw")
    status, body = call("POST", ANALYZE, {"targetId": PGI, "database": "shop", "queryText": "SELECT 1"})
    assert status == 200, body
    assert sql.opened[-1]["uri"] == "postgresql://shop_user:tenant%20pw@127.0.0.1:6543/shop"
    cluster = "pgc-0123456789ab"
    fake_ports.store.create("cluster", {
        "id": cluster, "tenant_id": "acme", "name": "c", "status": "running", "created_at": "2026-01-01T00:00:00Z",
        "username": "c_user", "database": "cdb",
        "nodes": [{"id": "n1", "endpoint": {"host": "127.0.0.1", "port": 7001}},
                  {"id": "n2", "endpoint": {"host": "127.0.0.1", "port": 7002}}],
    })  # fmt: skip
    fake_ports.secrets.put(f"clusters/{cluster}/c_user", "cpw")
    status, body = call("POST", ANALYZE, {"resourceId": cluster, "queryText": "SELECT 1"})
    assert status == 200, body
    assert sql.opened[-1]["uri"] == (
        "postgresql://c_user:cpw@127.0.0.1:7001,127.0.0.1:7002/cdb?target_session_attrs=read-write"
    )
    fake_ports.secrets.delete(f"clusters/{cluster}/c_user")
    status, body = call("POST", ANALYZE, {"targetId": cluster, "queryText": "SELECT 1"})
    assert status == 409 and "no password" in body["error"]["message"]
    status, body = call("GET", "/api/v1/performance/queries/analysis", role="viewer")
    assert status == 200  # performance:read
