"""Locks (issue 13). Goals:

- MTTD: a blocking chain of three sessions appears in GET /locks/blocking-sessions within 5 s
  of forming (polled every 0.2 s, as a dashboard would), and in the capture history within one
  schedule interval (60 s);
- GET /locks/activity on a server holding 1,000 granted locks: p50 <= 100 ms;
- a capture of 50 servers finishes within 10 s (POST /locks/capture of a tenant with 50
  running instances).

`--servers N` sets the capture size (default 50; each instance is created through the API).
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import psycopg
from _stack import local_stack, summary
from psycopg import sql

LIMITS = {"INSTANCES": 64, "NODES": 64, "MEMORY_MB": 64 * 1024, "CPU": 64, "STORAGE_GB": 64 * 10}


def _create(stack, token: str, name: str) -> dict:  # type: ignore[no-untyped-def]
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": name, "memory": 256}, token)
    assert status == 202, body
    return body


def _mttd(stack, token: str, instance: dict) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    uri, iid = instance["credentials"]["uri"], instance["id"]
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS chain (id int PRIMARY KEY)")
        conn.execute("INSERT INTO chain VALUES (1), (2) ON CONFLICT DO NOTHING")
    a = psycopg.connect(uri)
    a.execute("UPDATE chain SET id = id WHERE id = 1")

    def wait(statements: list[str]) -> None:
        try:
            with psycopg.connect(uri) as conn:
                for s in statements:
                    conn.execute(s)
                conn.commit()
        except psycopg.Error:
            pass

    b = threading.Thread(
        target=wait,
        args=(["UPDATE chain SET id = id WHERE id = 2", "UPDATE chain SET id = id WHERE id = 1"],),
    )
    c = threading.Thread(target=wait, args=(["UPDATE chain SET id = id WHERE id = 2"],))
    b.start()
    time.sleep(0.3)
    formed = time.monotonic()
    c.start()
    seen = None
    while seen is None and time.monotonic() - formed < 30:
        _, body = stack.request("GET", f"/api/v1/locks/blocking-sessions?targetId={iid}", token=token)
        if body.get("summary", {}).get("totalBlockedSessions") == 2:
            seen = time.monotonic() - formed
        else:
            time.sleep(0.2)
    # The schedule captures every minute: wait for a capture that holds the chain.
    captured = None
    while captured is None and time.monotonic() - formed < 90:
        _, body = stack.request(
            "GET", f"/api/v1/locks/activity?targetId={iid}&timeRange=5m&pageSize=100", token=token
        )
        if any(lk.get("capturedAt") and not lk["lockGranted"] for lk in body.get("locks", [])):
            captured = time.monotonic() - formed
        else:
            time.sleep(1)
    a.close()
    b.join(10)
    c.join(10)
    return seen or float("nan"), captured or float("nan")


def _activity_with_granted_locks(stack, token: str, instance: dict, locks: int) -> list[float]:  # type: ignore[no-untyped-def]
    uri, iid = instance["credentials"]["uri"], instance["id"]
    with psycopg.connect(uri, autocommit=True) as conn:
        for i in range(locks):
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int)").format(sql.Identifier(f"lk_{i}")))
    holder = psycopg.connect(uri)
    for i in range(locks):
        # An AccessShareLock each, held until the transaction ends.
        holder.execute(sql.SQL("SELECT 1 FROM {} LIMIT 0").format(sql.Identifier(f"lk_{i}")))
    times = []
    try:
        for _ in range(30):
            started = time.perf_counter()
            status, body = stack.request(
                "GET", f"/api/v1/locks/activity?targetId={iid}&pageSize=50", token=token
            )
            times.append(time.perf_counter() - started)
            assert status == 200, body
        print(f"activity: {body['summary']['totalLocks']} locks on the server")
    finally:
        holder.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--locks", type=int, default=1000)
    args = parser.parse_args()
    for name, value in LIMITS.items():
        os.environ.setdefault(f"PGFLEET_TENANT_MAX_{name}", str(value))
    with local_stack() as stack:
        token = stack.token("operator", "bench")
        first = _create(stack, token, "locks-0")
        stack.wait_operation(first["operation_id"], token, timeout=300)
        seen, captured = _mttd(stack, token, first)
        print(
            f"MTTD blocking-sessions: {seen:.2f} s (goal <= 5 s); in the capture history: {captured:.1f} s (goal <= 60 s)"
        )
        times = _activity_with_granted_locks(stack, token, first, args.locks)
        print(
            summary(f"GET /locks/activity with {args.locks} granted locks", [t * 1000 for t in times], "ms")
            + " (goal p50 <= 100 ms)"
        )
        created = [first]
        for i in range(1, args.servers):
            created.append(_create(stack, token, f"locks-{i}"))
        for body in created[1:]:
            stack.wait_operation(body["operation_id"], token, timeout=600)
        captures = []
        for _ in range(5):
            started = time.perf_counter()
            status, body = stack.request("POST", "/api/v1/locks/capture", {"tenantId": "bench"}, token)
            captures.append(time.perf_counter() - started)
            assert status == 200 and len(body["targetsCaptured"]) == args.servers, body
        print(summary(f"capture of {args.servers} servers", captures) + " (goal <= 10 s)")
        for body in created:
            stack.request("DELETE", f"/api/v1/postgres/single/{body['id']}", token=token)


if __name__ == "__main__":
    main()
