"""Issue 15's "done when", as a new user on the real local stack: run a slow workload on an
instance; `queries/analysis` shows it as POOR or CRITICAL with an INDEX suggestion naming the
filtered column; `queries/analyze` explains it safely (a DELETE with analyze=true deletes
nothing), refuses two statements and COMMIT with 422s, and finds the seq scan of the big table;
`indexes/analysis` recommends exactly that index with hypopg's evidence; `optimize` builds it
concurrently while writes go on; the statement gets faster and the recommendation says by how
much; `connections/configure` puts PgBouncer in front and the app connects through the pooler
URI."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack, wait_for

PERF = "/api/v1/performance"
ROWS = 400_000


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-performance-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "slow-shop"}, token)
    assert status == 202, body
    stack.wait_created(body["operation_id"], token)
    with psycopg.connect(body["credentials"]["uri"], autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE public.events (id bigint PRIMARY KEY, account int, payload text)")
        conn.execute(
            "INSERT INTO public.events SELECT g, g %% 5000, md5(g::text) FROM generate_series(1, %s) g",
            (ROWS,),
        )
        conn.execute("ANALYZE public.events")
        for i in range(110):  # PgHero's slow rule needs 100 calls
            conn.execute("SELECT count(*) FROM public.events WHERE account = %s", (i,))
    return body


def _count(instance: dict[str, Any]) -> int:
    with psycopg.connect(instance["credentials"]["uri"], autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM public.events").fetchone()
        assert row is not None
        return int(row[0])


def test_a_slow_workload_is_rated_and_explained_safely(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    status, body = stack.request("GET", f"{PERF}/queries/analysis?targetId={iid}&sortBy=impact", token=token)
    assert status == 200, body
    (slow,) = [q for q in body["queries"] if "public.events WHERE account" in q["queryText"]]
    print("rated", slow["performanceRating"], slow["statistics"]["avgExecutionTime"], "ms")
    assert slow["statistics"]["totalExecutions"] >= 110
    if slow["statistics"]["avgExecutionTime"] >= 20:
        assert slow["performanceRating"] in ("POOR", "CRITICAL")
    index = [s for s in slow["optimizationSuggestions"] if s["type"] == "INDEX"]
    assert index and '("account")' in index[0]["sqlSuggestion"]

    analyze = {"targetId": iid, "queryText": slow["queryText"], "parameters": [7],
               "explainOptions": {"analyze": True, "buffers": True, "timing": True, "format": "JSON"}}  # fmt: skip
    status, plan = stack.request("POST", f"{PERF}/queries/analyze", analyze, token)
    assert status == 200, plan
    assert {f["findingType"] for f in plan["executionPlan"]["findings"]} >= {"SEQ_SCAN_LARGE_TABLE"}
    assert plan["roleName"] == instance["credentials"]["username"]

    delete = {"targetId": iid, "queryText": "DELETE FROM public.events", "explainOptions": {"analyze": True}}
    status, deleted = stack.request("POST", f"{PERF}/queries/analyze", delete, token)
    assert status == 200, deleted
    assert _count(instance) == ROWS  # ran, and rolled back

    for text, said in (("SELECT 1; DELETE FROM public.events", "2 statements"), ("COMMIT", "COMMIT"),
                       ("DROP TABLE public.events", "DROP")):  # fmt: skip
        status, refused = stack.request(
            "POST", f"{PERF}/queries/analyze", {"targetId": iid, "queryText": text}, token
        )
        assert status == 422 and said in refused["error"]["message"], refused
    assert _count(instance) == ROWS


def _workload(uri: str, calls: int) -> None:
    with psycopg.connect(uri, autocommit=True, connect_timeout=5) as conn:
        for i in range(calls):
            conn.execute("SELECT count(*) FROM public.events WHERE account = %s", (i,))


class Writer(threading.Thread):
    """Inserts rows one transaction at a time until stopped; remembers how many, and errors."""

    def __init__(self, uri: str) -> None:
        super().__init__(daemon=True)
        self.uri, self.stop, self.rows, self.errors = uri, threading.Event(), 0, []  # type: ignore[var-annotated]

    def run(self) -> None:
        with psycopg.connect(self.uri, autocommit=True, connect_timeout=5) as conn:
            while not self.stop.is_set():
                try:
                    conn.execute("INSERT INTO public.events VALUES (%s, 1, 'w')", (10_000_000 + self.rows,))
                    self.rows += 1
                except psycopg.Error as exc:  # pragma: no cover - the test fails on it
                    self.errors.append(str(exc))
                time.sleep(0.005)


def test_the_index_is_recommended_built_while_writes_go_on_and_measured(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    status, body = stack.request("GET", f"{PERF}/indexes/analysis?targetId={iid}", token=token)
    assert status == 200, body
    created = [r for r in body["recommendations"] if r["type"] == "CREATE"]
    assert [(r["tableName"], r["columns"]) for r in created] == [("events", ["account"])], created
    (advice,) = created
    assert advice["benefit"]["costAfter"] <= advice["benefit"]["costBefore"] / 2  # Dexter's rule, by hypopg
    assert advice["writeCost"]["indexSizeBytes"] and advice["reasoning"]
    print("recommended", advice["indexDefinition"], advice["priority"], advice["benefit"])

    writer = Writer(uri)
    writer.start()
    try:
        status, started = stack.request(
            "POST", f"{PERF}/indexes/optimize", {"recommendations": [advice["id"]]}, token
        )
        assert status == 202, started
        stack.wait_operation(started["operationId"], token, timeout=180)
        time.sleep(0.5)
    finally:
        writer.stop.set()
        writer.join(10)
    assert writer.errors == [] and writer.rows > 0, writer.errors  # writes went on during the build

    _workload(uri, 50)

    def measured() -> dict[str, Any] | None:
        _, got = stack.request(
            "GET", f"{PERF}/indexes/analysis?targetId={iid}&includeApplied=true", token=token
        )
        applied = next((r for r in got["recommendations"] if r["id"] == advice["id"]), None)
        return applied if applied and applied.get("measured") else None

    applied = wait_for(
        measured, timeout=60, interval=2, what="the measured improvement on the recommendation"
    )
    print("measured", applied["measured"])
    assert applied["status"] == "APPLIED" and applied["measured"]["planUsesIndex"] is True
    factor = applied["measured"]["improvementFactor"]
    assert factor is None or factor > 2, applied["measured"]


def test_pgbouncer_in_front_and_the_app_connects_through_it(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    body = {"targetId": iid, "poolerConfiguration": {"poolMode": "transaction", "defaultPoolSize": 5,
                                                     "maxClientConnections": 50}}  # fmt: skip
    status, configured = stack.request("POST", f"{PERF}/connections/configure", body, token)
    assert status == 202, configured
    stack.wait_operation(configured["operationId"], token, timeout=120)
    pooler_uri = configured["credentials"]["poolerUri"]
    with psycopg.connect(pooler_uri, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) >= %s FROM public.events", (ROWS,)).fetchone()
        assert row == (True,)
    _, got = stack.request("GET", f"/api/v1/postgres/single/{iid}", token=token)
    assert got["pooler"]["port"] == int(pooler_uri.rsplit(":", 1)[1].split("/")[0]), got["pooler"]
    status, again = stack.request("POST", f"{PERF}/connections/configure", body, token)
    assert status == 202 and (again.get("credentials") or {}).get("poolerUri") in (None, pooler_uri)
