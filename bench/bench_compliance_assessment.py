"""Compliance assessment speed on the real local stack: 10 running instances, then FULL HIPAA
assessments of all of them (every SQL control through the SQL seam, the backup facts from
pgBackRest, the platform facts), from the 202 to the operation's end, repeated. Goal: a FULL
HIPAA assessment of 10 servers in at most 60 s. Prints its figures; never a timed test."""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "functions")]

from bench._stack import local_stack, summary  # noqa: E402

SERVERS = 10
ROUNDS = 3
GOAL_SECONDS = 60.0


def main() -> None:
    with local_stack() as stack:
        operator = stack.token("operator", "acme")
        officer = stack.token("compliance_officer", "acme")
        started = time.perf_counter()
        made = []
        for i in range(SERVERS):
            status, body = stack.request(
                "POST", "/api/v1/postgres/single", {"name": f"bench-{i}", "memory": 256}, operator
            )
            assert status == 202, body
            made.append(body)
        for body in made:
            stack.wait_created(body["operation_id"], operator, timeout=600)
        print(f"{SERVERS} instances running in {time.perf_counter() - started:.1f} s")
        timings: list[float] = []
        last: dict = {}
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            status, run = stack.request(
                "POST", "/api/v1/compliance/assessments/run", {"framework": "HIPAA"}, officer
            )
            assert status == 202, run
            stack.wait_operation(run["operation_id"], officer, timeout=600)
            timings.append(time.perf_counter() - t0)
            status, last = stack.request(
                "GET", f"/api/v1/compliance/assessments/{run['assessment_id']}", token=officer
            )
            assert status == 200 and last["status"] == "COMPLETED", last
        s = last["summary"]
        print(f"assessment: {s['total_controls']} controls on {s['servers']} servers; {s['compliant']} compliant, "
              f"{s['non_compliant']} non-compliant, {s['not_applicable']} not applicable; score {last['overall_score']}")  # fmt: skip
        for r in last["results"]:
            print(f"  {r['control_id']:<24} {r['assessment_result']:<15} score {r['score']}")
        print(summary("FULL HIPAA assessment of 10 servers, 202 to operation end", timings))
        worst = max(timings)
        print(
            f"goal <= {GOAL_SECONDS:.0f} s: {'met' if worst <= GOAL_SECONDS else 'MISSED'} (worst {worst:.2f} s)"
        )


if __name__ == "__main__":
    main()
