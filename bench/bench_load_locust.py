"""The seed's success metrics under load, measured with locust against the local stack (loopback).

1. Throughput: 100 clients offering 10,000 requests/minute in all (each 1.67 requests/s), for a
   minute. Goals: average response time < 200 ms, error rate < 0.1 %, 10,000+ requests/minute.
   Each client has a token of its own with the "system" rate-limit plan, so the limiter lets
   them through; a 429 is counted apart from the errors.
2. Latency: 20 concurrent clients at 1,000 requests/minute in all (each 0.83 requests/s), for
   a minute, with standard-plan tokens (one each). Goals: p99 <= 50 ms, no errors but the
   intended 429s.
3. Saturation: the same 100 clients in a closed loop (each sends its next request as soon as
   the last one answers) for 30 s: what this machine serves at most, load generator included.

The requests: GET of an instance, GET of the list, GET /api/v1/operations/{id}, GET /api/health,
chosen at random with equal weights (bench/locustfile_pgfleet.py). Locust runs as a subprocess
(`locust --headless`); its figures come from its CSV stats, after the users have all started
(--reset-stats). The machine's load average is printed with each run: the gateway is one Python
process and locust shares the same cores.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _stack import REPO, local_stack

from pgfleet.core.auth import LocalTokens

LOCUSTFILE = REPO / "bench" / "locustfile_pgfleet.py"
LOCUST = Path(sys.executable).with_name("locust")
WARMUP_REQUESTS = 50


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def _locust(
    url: str, data: dict[str, Any], users: int, rate: float, seconds: int, work: Path
) -> dict[str, Any]:
    """One headless locust run; its aggregated figures and failures by message."""
    (work / "data.json").write_text(json.dumps(data))
    prefix = work / f"run-{users}-{rate}"
    proc = subprocess.run(
        [str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "--host", url, "--users", str(users),
         "--spawn-rate", str(users), "--run-time", f"{seconds}s", "--reset-stats", "--stop-timeout", "5",
         "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
        env={**os.environ, "PGFLEET_LOCUST_DATA": str(work / "data.json"), "PGFLEET_LOCUST_RATE": str(rate)},
        capture_output=True, text=True, timeout=seconds + 120,
    )  # fmt: skip
    stats_file = Path(f"{prefix}_stats.csv")
    if not stats_file.exists():
        raise SystemExit(f"locust did not run (exit {proc.returncode}): {proc.stderr[-3000:]}")
    rows = list(csv.DictReader(stats_file.open()))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    failures: dict[str, int] = {}
    for row in csv.DictReader(Path(f"{prefix}_failures.csv").open()):
        failures[row["Error"]] = failures.get(row["Error"], 0) + int(row["Occurrences"])
    return {"total": total, "rows": [r for r in rows if r["Name"] != "Aggregated"], "failures": failures}


def _figures(run: dict[str, Any]) -> dict[str, float]:
    total = run["total"]
    count = int(total["Request Count"])
    limited = sum(n for error, n in run["failures"].items() if error.startswith("429"))
    errors = int(total["Failure Count"]) - limited
    return {
        "requests": count, "errors": errors, "429s": limited, "error %": 100 * errors / max(count, 1),
        "per minute": float(total["Requests/s"]) * 60,  # over the run after the reset
        "average ms": float(total["Average Response Time"]), "p99 ms": float(total["99%"]),
    }  # fmt: skip


def _report(title: str, run: dict[str, Any], loads: tuple[str, str], goals: dict[str, bool]) -> None:
    total, f = run["total"], _figures(run)
    print(f"== {title}")
    print(f"  {loads[0]} before, {loads[1]} after")
    print(
        f"  requests: {f['requests']:.0f}, throughput {f['per minute']:,.0f} requests/minute "
        f"({float(total['Requests/s']):.1f}/s)"
    )
    print(
        f"  response time: average {f['average ms']:.1f} ms, p50 {total['50%']} ms, p95 {total['95%']} ms, "
        f"p99 {total['99%']} ms, max {float(total['Max Response Time']):.0f} ms"
    )
    print(f"  errors (429s apart): {f['errors']:.0f} = {f['error %']:.3f} %; 429s: {f['429s']:.0f}")
    for error, n in sorted(run["failures"].items()):
        print(f"    {n} x {error}")
    for row in run["rows"]:
        print(
            f"    {row['Name']}: {row['Request Count']} requests, "
            f"average {float(row['Average Response Time']):.1f} ms, p99 {row['99%']} ms"
        )
    for goal, met in goals.items():
        print(f"  goal {goal}: {'met' if met else 'MISSED'}")


def main() -> None:
    with local_stack() as stack, tempfile.TemporaryDirectory(prefix="pgfleet-locust-") as tmp:
        work = Path(tmp)
        owner = stack.token("operator", "bench")
        status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "load"}, owner)
        assert status == 202, body
        stack.wait_operation(body["operation_id"], owner)
        path = f"/api/v1/postgres/single/{body['id']}"
        for _ in range(WARMUP_REQUESTS):
            assert stack.request("GET", path, token=owner)[0] == 200
        tokens = LocalTokens(stack.home)

        def run(
            name: str, users: int, plan: str | None, rate: float, seconds: int
        ) -> tuple[dict[str, Any], tuple[str, str]]:
            minted = [
                tokens.mint("operator", "bench", sub=f"locust-{name}-{i}", plan=plan) for i in range(users)
            ]
            data = {"instance": body["id"], "operation": body["operation_id"], "tokens": minted}
            before = _load()
            result = _locust(stack.url, data, users, rate, seconds, work)
            return result, (before, _load())

        # 1. the seed's success metrics: 10,000 requests/minute offered by 100 system-plan clients
        result, loads = run("throughput", 100, "system", 10_000 / 60 / 100, 60)
        f = _figures(result)
        goals = {
            "average < 200 ms": f["average ms"] < 200,
            "error rate < 0.1 %": f["error %"] < 0.1,
            "10,000+ requests/minute": f["per minute"] >= 10_000,
        }
        _report("throughput: 100 clients offering 10,000 requests/minute in all (system plan), 60 s",
                result, loads, goals)  # fmt: skip
        # 2. latency: 20 clients, 1,000 requests/minute in all, standard-plan tokens
        result, loads = run("latency", 20, None, 1_000 / 60 / 20, 60)
        f = _figures(result)
        goals = {"p99 <= 50 ms": f["p99 ms"] <= 50, "0 errors other than intended 429s": f["errors"] == 0}
        _report("latency: 20 concurrent clients at 1,000 requests/minute in all (standard plan), 60 s",
                result, loads, goals)  # fmt: skip
        # 3. saturation: the same 100 clients in a closed loop
        result, loads = run("saturation", 100, "system", 0, 30)
        _report("saturation: 100 clients in a closed loop (system plan), 30 s: this machine's ceiling",
                result, loads, {})  # fmt: skip
        stack.request("DELETE", path, token=owner)


if __name__ == "__main__":
    main()
