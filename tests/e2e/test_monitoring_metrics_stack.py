"""Monitoring through the real local stack: a new instance is sampled by the capture schedule
(the ticker fires pgfleet-monitoring-capture every minute); pgbench runs a deliberately slow
statement (pg_sleep(0.025), 150 times) between two captures; then GET /metrics shows a commit
rate above zero, the health shows the server HEALTHY from its sample, and the performance
dashboard rates the slow statement POOR or CRITICAL with a computed suggestion.

pg_stat_statements is preloaded on every server, and the platform creates its view when it
creates the server's database (in `postgres`, schema pgfleet_stats): nothing to do by hand."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local import postgres as local_pg
from tests.helpers import LocalStack, running_stack, wait_for

MONITORING = "/api/v1/monitoring"
pytestmark = pytest.mark.skipif("15" not in local_pg.installed_binaries(), reason="needs PostgreSQL 15")


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-monitoring-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("viewer", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack) -> dict[str, Any]:
    operator = stack.token("operator", "acme")
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "watched-db"}, operator)
    assert status == 202, body
    stack.wait_created(body["operation_id"], operator)
    return body


def _samples_of(stack: LocalStack, token: str, iid: str) -> list[dict[str, Any]]:
    """The commits_per_second points of the instance (one a sample at MINUTE aggregation)."""
    status, body = stack.request("GET", f"{MONITORING}/metrics?targetId={iid}&timeRange=15m&aggregation=MINUTE",
                                 token=token)  # fmt: skip
    assert status == 200, body
    series = [s for s in body["metrics"] if s["name"] == "up"]
    return series[0]["dataPoints"] if series else []


def _pgbench(uri: str, tmp: Path) -> None:
    script = tmp / "slow.sql"
    script.write_text("SELECT pg_catalog.pg_sleep(0.025) AS monitoring_slow_probe;\n")
    pgbench = local_pg.installed_binaries()["15"] / "pgbench"
    proc = subprocess.run(
        [str(pgbench), "-n", "-c", "3", "-t", "50", "-f", str(script), uri],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "number of transactions actually processed: 150" in proc.stdout, proc.stdout


def test_schedule_samples_pgbench_and_the_dashboard_rates_the_slow_query(
    stack: LocalStack, token: str, instance: dict[str, Any], tmp_path: Path
) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    # the first sample of the new instance, by the schedule
    wait_for(lambda: _samples_of(stack, token, iid), 90, interval=1.0, what="a first sample")
    seen = len(_samples_of(stack, token, iid))
    started = datetime.now(UTC)
    _pgbench(uri, tmp_path)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE ticks (id int)")
        conn.execute("INSERT INTO ticks SELECT generate_series(1, 1000)")
    # the next sample: its rates are of the interval that saw the workload
    wait_for(lambda: len(_samples_of(stack, token, iid)) > seen, 90, interval=1.0, what="a second sample")

    status, body = stack.request("GET", f"{MONITORING}/metrics?targetId={iid}&timeRange=15m&category=PERFORMANCE",
                                 token=token)  # fmt: skip
    assert status == 200, body
    series = {s["name"]: s for s in body["metrics"]}
    commits = series["commits_per_second"]["dataPoints"]
    assert commits and max(p["value"] for p in commits) > 0, commits
    assert series["commits_per_second"]["targetId"] == iid and body["aggregation"] == "MINUTE"
    assert all(
        p["status"] in ("NORMAL", "WARNING", "CRITICAL") for p in series["cache_hit_ratio"]["dataPoints"]
    )

    status, health = stack.request("GET", f"{MONITORING}/health?targetId={iid}", token=token)
    assert status == 200, health
    server = next(c for c in health["components"] if c["component"] == f"server:{iid}")
    assert server["status"] in ("HEALTHY", "WARNING"), server
    assert datetime.fromisoformat(server["lastCheck"].replace("Z", "+00:00")) >= started
    assert {"up", "connections_used_percent", "xid_remaining"} <= {m["name"] for m in server["metrics"]}

    status, board = stack.request(
        "GET", f"{MONITORING}/performance/dashboard?targetId={iid}&limit=20", token=token
    )
    assert status == 200, board
    slow = next(q for q in board["topQueries"] if "monitoring_slow_probe" in q["queryText"])
    assert slow["executionCount"] >= 150 and slow["avgExecutionTime"] >= 20, slow
    assert slow["performanceRating"] in ("POOR", "CRITICAL"), slow
    assert any(s.startswith("slow:") for s in slow["optimizationSuggestions"]), slow
    assert board["summary"]["avgResponseTime"] is not None and board["summary"]["throughput"] is not None
    assert {r["resource"] for r in board["systemResources"]} == {"cpu", "memory", "connections", "storage"}

    other = stack.token("viewer", "globex")
    assert stack.request("GET", f"{MONITORING}/metrics?targetId={iid}", token=other)[0] == 404
    assert stack.request("GET", f"{MONITORING}/metrics?timeRange=90d", token=token)[0] == 422
