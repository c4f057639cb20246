"""Issue 15's first "done when" steps, as a new user on the real local stack: run a slow
workload on an instance; `queries/analysis` shows it as POOR or CRITICAL with an INDEX
suggestion naming the filtered column; `queries/analyze` explains it safely (a DELETE with
analyze=true deletes nothing), refuses two statements and COMMIT with 422s, and finds the
seq scan of the big table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack

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
