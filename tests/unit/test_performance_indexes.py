"""The index advisor without a server: candidate columns from parsed statements (and their
order), the prefix-duplicate rule, the bloat estimate, the priority formula; optimize through
the api handler on stored recommendations (404, 422, 403, dry run, an at() schedule and the
task it fires). The what-if against a real server is in
tests/integration/test_performance_indexes.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgfleet.domains.performance import index_advice, indexes, workflows
from pgfleet.domains.performance.indexes import Index

COLUMNS = {
    "orders": {"id", "created_at", "status", "customer_id", "total"},
    "customers": {"id", "email", "name"},
    "events": {"id", "kind", "at"},
}


def _candidates(text: str) -> dict[str, list[tuple[str, ...]]]:
    scopes, _ = index_advice.parse_statement(text)
    used = index_advice.usages(
        scopes,
        lambda name: ("public", name.name) if name.name in COLUMNS else None,
        lambda key: COLUMNS[key[1]],
    )
    return {key[1]: index_advice.candidate_columns(usage) for key, usage in used.items()}


def test_equality_columns_come_first_then_the_range_then_the_order() -> None:
    found = _candidates(
        "SELECT * FROM orders o WHERE o.created_at > $1 AND o.status = $2 ORDER BY o.created_at LIMIT $3"
    )
    assert found == {"orders": [("status", "created_at"), ("status",)]}


def test_an_order_after_a_different_range_column_is_not_appended() -> None:
    found = _candidates("SELECT * FROM orders WHERE status = $1 AND total > $2 ORDER BY created_at")
    assert found["orders"][0] == ("status", "total")


def test_order_columns_follow_equalities_when_there_is_no_range() -> None:
    found = _candidates(
        "SELECT id FROM orders WHERE customer_id = $1 AND status IN ($2, $3) ORDER BY created_at DESC"
    )
    assert found["orders"] == [("customer_id", "status", "created_at"), ("customer_id", "status")]


def test_join_columns_map_to_their_tables_through_aliases_after_the_filters() -> None:
    found = _candidates(
        "SELECT o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.email = $1"
    )
    assert found["customers"] == [("email", "id"), ("email",), ("id",)]
    assert found["orders"] == [("customer_id",)]


def test_unqualified_columns_resolve_to_the_only_table_that_has_them_and_subqueries_count() -> None:
    found = _candidates(
        "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE created_at >= $1)"
    )
    assert found == {"customers": [("id",)], "orders": [("created_at",)]}
    assert _candidates("UPDATE events SET kind = $1 WHERE at < $2") == {"events": [("at",)]}
    ambiguous = _candidates("SELECT 1 FROM orders o, customers c WHERE id = $1")
    assert ambiguous == {}  # `id` is a column of both: no guess


def test_an_order_by_over_two_tables_adds_no_order_columns() -> None:
    found = _candidates(
        "SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY c.name, o.total"
    )
    assert found["customers"] == [("id",)]


def test_parameters_are_counted_and_non_queries_refused() -> None:
    assert index_advice.parse_statement("SELECT * FROM orders WHERE id = $1 AND status = $3")[1] == 3
    for text in ("CREATE TABLE x (a int)", "SELECT 1; SELECT 2", "SELEC 1"):
        with pytest.raises(ValueError):
            index_advice.parse_statement(text)


def _index(name: str, columns: list[str | None], opclasses: str = "", **kw: Any) -> Index:
    fields: dict[str, Any] = dict(
        schema="public", table="t", name=name, method="btree", size=8192, pages=1, table_rows=1.0, unique=False,
        primary=False, valid=True, replica_identity=False, backs_constraint=False, columns=columns,
        expressions=None, predicate=None,
        opclasses=opclasses or f"[0:{len(columns) - 1}]={{{','.join('3126' for _ in columns)}}}",
        options=f"[0:{len(columns) - 1}]={{{','.join('0' for _ in columns)}}}", scans=0, tuples_read=0,
        tuples_fetched=0, last_used=None, definition="", table_oid=1, fillfactor=90,
    )  # fmt: skip
    fields.update(kw)
    return Index(**fields)


def test_a_leading_prefix_with_the_same_method_and_predicate_is_a_duplicate() -> None:
    short, long = _index("a", ["x"]), _index("b", ["x", "y"])
    other_order = _index("c", ["y", "x"])
    partial = _index("d", ["x"], predicate="(y > 0)")
    hashed = _index("e", ["x"], method="hash")
    unique = _index("f", ["x"], unique=True)
    other_class = _index("g", ["x"], opclasses="[0:0]={10043}")  # text_pattern_ops
    indexes.find_duplicates([short, long, other_order, partial, hashed, unique, other_class])
    assert short.findings == ["DUPLICATE"] and short.duplicate_of == "b"
    for kept in (long, other_order, partial, hashed, unique, other_class):
        assert kept.findings == [], kept.name


def test_of_two_identical_indexes_only_one_is_a_duplicate() -> None:
    first, second = _index("a_idx", ["x"]), _index("b_idx", ["x"])
    indexes.find_duplicates([first, second])
    assert (first.findings, second.findings) == ([], ["DUPLICATE"])
    constraint, plain = _index("c_key", ["x"], backs_constraint=True), _index("d_idx", ["x"])
    indexes.find_duplicates([plain, constraint])
    assert plain.findings == ["DUPLICATE"] and constraint.findings == []


def test_unused_spares_what_enforces_something_and_invalid_is_reported() -> None:
    found = [
        _index("pk", ["id"], primary=True, unique=True), _index("rid", ["x"], replica_identity=True),
        _index("plain", ["y"]), _index("broken", ["z"], valid=False), _index("used", ["w"], scans=5),
    ]  # fmt: skip
    indexes.classify(found, {}, 8192)
    assert {i.name: i.findings for i in found} == {
        "pk": [], "rid": [], "plain": ["UNUSED"], "broken": ["INVALID"], "used": [],
    }  # fmt: skip


def test_bloat_is_the_share_of_pages_beyond_what_the_rows_need() -> None:
    stats = {("public", "t", "id"): (4, 0.0)}
    # 200k int4 keys: 16-byte tuples + 4-byte pointers over 8152 x 0.9 bytes: 546 pages + the metapage.
    fresh = _index("i", ["id"], pages=548, table_rows=200_000.0, size=548 * 8192)
    bloated = _index("j", ["id"], pages=1094, table_rows=200_000.0, size=1094 * 8192)
    assert indexes.bloat_percent(fresh, stats, 8192) == pytest.approx(0.2, abs=0.5)
    assert indexes.bloat_percent(bloated, stats, 8192) == pytest.approx(50.0, abs=0.5)
    assert indexes.bloat_percent(_index("k", ["id"], method="gin", pages=500), stats, 8192) is None
    assert indexes.bloat_percent(_index("l", ["other"], pages=500), stats, 8192) is None  # not analysed


def test_efficiency_is_zero_unused_and_loses_its_bloat_share() -> None:
    assert indexes.efficiency_score(_index("a", ["x"], scans=0)) == 0.0
    assert indexes.efficiency_score(_index("b", ["x"], scans=10_000)) == 100.0
    assert indexes.efficiency_score(_index("c", ["x"], scans=10_000, bloat=40.0)) == 60.0


def test_the_priority_falls_with_the_write_share() -> None:
    assert index_advice.priority(95.0, 100.0, 0.0) == ("HIGH", 0.0)
    assert index_advice.priority(95.0, 100.0, 100.0) == ("MEDIUM", 0.5)
    assert index_advice.priority(95.0, 10.0, 990.0) == ("LOW", 0.99)
    assert index_advice.priority(75.0, 100.0, 0.0)[0] == "MEDIUM"
    assert index_advice.priority(55.0, 100.0, 0.0)[0] == "LOW"


def test_the_maintenance_window_starts_now_inside_it_else_at_its_next_start() -> None:
    at = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert workflows.window_start("11:00", "13:00", at) == at
    assert workflows.window_start("14:00", "15:00", at) == datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    assert workflows.window_start("02:00", "04:00", at) == datetime(2026, 1, 6, 2, 0, tzinfo=UTC)
    assert workflows.window_start("23:00", "01:00", at.replace(hour=0, minute=30)) == at.replace(
        hour=0, minute=30
    )


def test_index_names_stay_within_63_bytes_and_are_stable() -> None:
    assert indexes.index_name_for("orders", ["status", "created_at"]) == "orders_status_created_at_idx"
    long = indexes.index_name_for("t" * 60, ["c" * 30])
    assert len(long.encode()) <= 63 and long == indexes.index_name_for("t" * 60, ["c" * 30])


# --- optimize through the api handler --------------------------------------------------------------

INSTANCE = "pgi-0123456789ab"
REC = "ixr-00112233445566aa"


@pytest.fixture
def stored(fake_ports: Any) -> dict[str, Any]:
    fake_ports.store.create("instance", {
        "id": INSTANCE, "tenant_id": "acme", "name": "shop-db", "status": "running", "database": "shop",
        "created_at": "2026-01-01T00:00:00Z",
    })  # fmt: skip
    rec = {
        "type": "CREATE", "table_name": "orders", "schema_name": "public", "columns": ["status"],
        "index_name": "orders_status_idx", "sql": 'CREATE INDEX CONCURRENTLY "orders_status_idx" ON ...',
        "target_id": INSTANCE, "database": "shop", "status": "RECOMMENDED", "priority": "HIGH",
        "estimated_benefit": 99.0, "estimated_cost": "~1 MB", "reasoning": "because",
    }  # fmt: skip
    return fake_ports.store.create(indexes.KIND, {
        "id": f"{INSTANCE}:shop", "tenant_id": "acme", "parent_id": INSTANCE, "created_at": "2026-01-01T00:00:00Z",
        "recommendations": {REC: rec},
    })  # fmt: skip


def test_an_unknown_recommendation_is_404_and_another_tenants_too(call: Any, stored: Any) -> None:
    status, body = call(
        "POST", "/api/v1/performance/indexes/optimize", {"recommendations": ["ixr-ffffffffffffffff"]}
    )
    assert status == 404, body
    status, body = call(
        "POST", "/api/v1/performance/indexes/optimize", {"recommendations": [REC]}, tenant="other"
    )
    assert status == 404, body


def test_optimize_needs_the_optimize_permission_and_valid_timing(call: Any, stored: Any) -> None:
    path = "/api/v1/performance/indexes/optimize"
    assert call("POST", path, {"recommendations": [REC]}, role="viewer")[0] == 403
    status, body = call("POST", path, {"recommendations": [REC], "scheduleFor": "2020-01-01T00:00:00Z"})
    assert status == 422 and "future" in body["error"]["message"], body
    both = {"recommendations": [REC], "scheduleFor": "2099-01-01T00:00:00Z",
            "maintenanceWindow": {"start": "02:00", "end": "04:00"}}  # fmt: skip
    assert call("POST", path, both)[0] == 422
    assert call("POST", path, {"recommendations": []})[0] == 422
    assert call("POST", path, {"recommendations": [REC], "scheduleFor": "soon"})[0] == 422


def test_a_dry_run_says_what_would_run(call: Any, stored: Any, fake_ports: Any) -> None:
    status, body = call(
        "POST", "/api/v1/performance/indexes/optimize", {"recommendations": [REC], "dryRun": True}
    )
    assert status == 202, body
    assert body["status"] == "DRY_RUN" and body["operationId"] is None
    assert body["actions"][0]["sql"].startswith("CREATE INDEX CONCURRENTLY")
    assert fake_ports.queue.messages == []


def test_now_queues_an_operation(call: Any, stored: Any, fake_ports: Any) -> None:
    status, body = call("POST", "/api/v1/performance/indexes/optimize", {"recommendations": [REC]})
    assert status == 202 and body["status"] == "QUEUED", body
    op = fake_ports.store.get("operation", body["operationId"])
    assert op["type"] == workflows.OPTIMIZE and op["resource_id"] == INSTANCE
    assert op["params"]["recommendations"] == [REC]


def test_schedule_for_creates_an_at_schedule_whose_task_starts_the_operation(
    call: Any, stored: Any, fake_ports: Any
) -> None:
    when = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    status, body = call(
        "POST", "/api/v1/performance/indexes/optimize",
        {"recommendations": [REC], "scheduleFor": when.isoformat().replace("+00:00", "Z")},
    )  # fmt: skip
    assert status == 202 and body["status"] == "SCHEDULED", body
    schedule = fake_ports.scheduler.get(body["scheduleName"])
    assert schedule.expression == f"at({when.strftime('%Y-%m-%dT%H:%M:%S')})"
    lines = workflows.scheduled_start(fake_ports, schedule.payload)
    assert lines[0].startswith(f"{body['scheduleName']}: started operation op-")
    assert fake_ports.scheduler.get(body["scheduleName"]) is None  # one-shot


def test_analysis_with_a_database_needs_a_target(call: Any, stored: Any) -> None:
    status, body = call("GET", "/api/v1/performance/indexes/analysis?database=shop", role="viewer")
    assert status == 422, body


def test_write_rates_use_the_delta_since_the_previous_analysis_when_there_is_one() -> None:
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    table = indexes.Table(1, "public", "events", 1e6, 1_000_000, 0, 0, writes=1_003_600)
    reset = now - timedelta(hours=10)
    first = indexes.WriteRates({}, None, reset, now)
    rate, basis = first.of(table)
    assert rate == pytest.approx(100_360.0) and "statistics reset" in basis  # the bulk load counts
    later = indexes.WriteRates({"public.events": 1_000_000}, now - timedelta(hours=1), reset, now)
    rate, basis = later.of(table)
    assert rate == pytest.approx(3600.0) and "previous analysis 60 min ago" in basis
    reset_since = indexes.WriteRates({"public.events": 2_000_000}, now - timedelta(hours=1), reset, now)
    assert "statistics reset" in reset_since.of(table)[1]  # counters went back: a reset in between


class _Recording:
    """A SqlSession that records what it is sent and plans with a fixed cost per EXPLAIN."""

    def __init__(self, costs: list[float], index_name: str = "<4242>btree_orders_status") -> None:
        self.sent: list[str] = []
        self._costs = costs
        self._index_name = index_name

    def _text(self, query: Any) -> str:
        return query if isinstance(query, str) else query.as_string(None)

    def execute(self, query: Any, params: Any = None) -> None:
        self.sent.append(self._text(query))

    def fetch_one(self, query: Any, params: Any = None) -> tuple[Any, ...] | None:
        text = self._text(query)
        self.sent.append(text)
        if "hypopg_create_index" in text:
            assert params == ("public", "orders", "btree", ["status"])
            return (4242, 8 * 1024 * 1024)
        cost = self._costs.pop(0)
        node: dict[str, Any] = {"Node Type": "Seq Scan", "Total Cost": cost}
        if cost < 100:
            node = {"Node Type": "Index Scan", "Total Cost": cost, "Index Name": self._index_name}
        return ([{"Plan": node}],)


def test_the_planner_prepares_a_generic_plan_anew_for_each_explain() -> None:
    session = _Recording([1000.0, 10.0])
    planner = index_advice.Planner(session, "SELECT * FROM orders WHERE status = $1 LIMIT $2", 2)  # type: ignore[arg-type]
    before = planner.explain()
    found = planner.what_if("pgfleet_hypopg", ("public", "orders"), [("status",)], before)
    assert (
        found is not None and found.used and found.improvement_percent == 99.0 and found.size_bytes == 8 << 20
    )
    assert session.sent[0] == "SET LOCAL plan_cache_mode = force_generic_plan"
    prepares = [t for t in session.sent if t.startswith("PREPARE")]
    assert prepares == [
        'PREPARE "pgfleet_whatif_1" AS SELECT * FROM orders WHERE status = $1 LIMIT $2',
        'PREPARE "pgfleet_whatif_2" AS SELECT * FROM orders WHERE status = $1 LIMIT $2',
    ]
    assert 'EXECUTE "pgfleet_whatif_2"(NULL, NULL)' in " ".join(session.sent)
    assert session.sent[-1] == 'SELECT "pgfleet_hypopg".hypopg_reset()'


def test_a_hypothetical_index_the_plan_does_not_use_is_not_kept() -> None:
    session = _Recording([1000.0, 10.0], index_name="some_other_index")
    planner = index_advice.Planner(session, "SELECT * FROM orders WHERE status = $1", 1)  # type: ignore[arg-type]
    assert planner.what_if("pgfleet_hypopg", ("public", "orders"), [("status",)], planner.explain()) is None
