"""Create -> running, over 20 creates (goal: p50 <= 1.5 s, p95 <= 3 s).

Each create is timed from the POST until psycopg connects with the returned URI ("accepting
connections") and until its create operation has succeeded ("running": the status the API
and `terraform apply` wait for). Creates run one after another, as a user or Terraform sends
them; each instance's first backup runs as its own operation after it is running, and is
timed too (POST -> first backup completed). The instances are deleted at the end.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from typing import Any

import psycopg
from _stack import local_stack, summary

CREATES = 20
# The bench tenant holds 21 instances at once: above the default tenant limits (admission).
LIMITS = {"INSTANCES": 64, "NODES": 64, "MEMORY_MB": 64 * 1024, "CPU": 64 * 1, "STORAGE_GB": 64 * 10}
POLL_SECONDS = 0.02


def _connectable(uri: str) -> bool:
    try:
        psycopg.connect(uri, connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


def main() -> None:
    for name, value in LIMITS.items():
        os.environ.setdefault(f"PGFLEET_TENANT_MAX_{name}", str(value))
    with local_stack() as stack:
        token = stack.token("operator", "bench")
        # Warm-up: the first create also builds the version's template data directory.
        status, warm = stack.request("POST", "/api/v1/postgres/single", {"name": "warm-up"}, token)
        assert status == 202, warm
        stack.wait_operation(warm["operation_id"], token)
        ids = [warm["id"]]
        # 1. Back to back, as `terraform apply` sends them: each create's first backup runs
        #    while the next create is provisioned.
        connected, running, ops = _creates(stack, token, "bench", ids)
        print(summary("create -> accepting connections", connected))
        print(summary("create -> running (operation succeeded)", running))
        _print_steps(ops)
        print(_first_backups(stack, token, ops))
        # 2. The same path with no backup in flight: each create waits for the previous one's
        #    first backup (the figure of the create path itself on this 2-core machine).
        connected, running, ops = _creates(stack, token, "quiet", ids, settle=True)
        print(summary("create -> running, no backup in flight", running))
        _print_steps(ops)
        for iid in ids:
            stack.request("DELETE", f"/api/v1/postgres/single/{iid}", token=token)


def _creates(
    stack: Any, token: str, prefix: str, ids: list[str], settle: bool = False
) -> tuple[list[float], list[float], list[dict[str, Any]]]:
    connected, running, ops = [], [], []
    for i in range(CREATES):
        started = time.perf_counter()
        status, body = stack.request("POST", "/api/v1/postgres/single", {"name": f"{prefix}-{i:02d}"}, token)
        assert status == 202, body
        seen_connect = None
        while True:
            if seen_connect is None and _connectable(body["credentials"]["uri"]):
                seen_connect = time.perf_counter() - started
            _, op = stack.request("GET", f"/api/v1/operations/{body['operation_id']}", token=token)
            if op["status"] in ("succeeded", "failed"):
                assert op["status"] == "succeeded", op
                break
            time.sleep(POLL_SECONDS)
        running.append(time.perf_counter() - started)
        if seen_connect is None:  # running implies accepting connections
            assert _connectable(body["credentials"]["uri"]), body["id"]
            seen_connect = running[-1]
        connected.append(seen_connect)
        ids.append(body["id"])
        ops.append(op)
        if settle:
            _first_backups(stack, token, [op])
    return connected, running, ops


def _seconds(step: dict[str, Any]) -> float:
    from datetime import datetime

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(step["finished_at"]) - parse(step["started_at"])).total_seconds()


def _print_steps(ops: list[dict[str, Any]]) -> None:
    names = [s["name"] for s in ops[0]["steps"]]
    parts = [
        f"{n} {statistics.median(_seconds(o['steps'][i]) for o in ops):.3f}s" for i, n in enumerate(names)
    ]
    print("create steps (median): " + ", ".join(parts))

    def parse(text: str) -> float:
        from datetime import datetime

        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    pickup = [parse(o["started_at"]) - parse(o["created_at"]) for o in ops]
    in_steps = [sum(_seconds(s) for s in o["steps"]) for o in ops]
    total = [parse(o["finished_at"]) - parse(o["created_at"]) for o in ops]
    between = [t - p - s for t, p, s in zip(total, pickup, in_steps, strict=True)]
    print(
        f"create operation (median): queued -> picked up {statistics.median(pickup):.3f}s, "
        f"in steps {statistics.median(in_steps):.3f}s, between steps {statistics.median(between):.3f}s, "
        f"queued -> succeeded {statistics.median(total):.3f}s"
    )


def _first_backups(stack: Any, token: str, ops: list[dict[str, Any]]) -> str:
    """Running -> first backup completed, from the operations' own timestamps."""
    from datetime import datetime

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    lags = []
    for op in ops:
        match = re.search(r"\(operation (op-[0-9a-f]{12})\)", op["steps"][-1]["reason"] or "")
        if match is None:
            return "first backup: inside the create operation (no operation of its own)"
        backup = stack.wait_operation(match[1], token, timeout=300)
        lags.append((parse(backup["finished_at"]) - parse(op["finished_at"])).total_seconds())
    return summary("running -> first backup completed", lags)


if __name__ == "__main__":
    main()
