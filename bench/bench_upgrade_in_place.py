"""In-place major-version upgrade (PostgreSQL 15 -> 18, UC8) of a single instance and of a
3-node cluster, under a writer.

Everything goes through the API of a local stack (HTTP, worker, real PostgreSQL, Patroni),
as a user would:
- the server (or cluster) is created on 15 and loaded with `pgbench -i -s SCALE` (70: ~1 GB);
- a writer commits continuously through the resource's own URI (for a cluster the multi-host
  read-write URI), one transaction per commit (a pgbench-style UPDATE of an account plus an
  INSERT of the commit's id), recording every id whose COMMIT was acknowledged;
- POST /api/v1/postgres/{single|cluster}/<id>/upgrade {"target_version": "18", "mode":
  "in_place"} until the operation ends;
- every acknowledged id is then read back on the upgraded server.

Printed per kind: the database size, the total time (POST to the end of the operation), the
seconds without a writable server as the writer saw them (the longest time without an
acknowledged commit) and as the operation measured them (`down_seconds`), each step's time,
and the acknowledged commits lost (must be 0).

    .venv/bin/python bench/bench_upgrade_in_place.py [--scale 70] [--kind single|cluster|both]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from _stack import local_stack

PG_BIN = Path("/usr/lib/postgresql/15/bin")
UPGRADE_TIMEOUT = 3600.0
PATHS = {"single": "/api/v1/postgres/single", "cluster": "/api/v1/postgres/cluster"}


class Writer(threading.Thread):
    """Commits one transaction after another through `uri`, reconnecting after a failure;
    remembers each acknowledged id and when it was acknowledged."""

    def __init__(self, uri: str, accounts: int) -> None:
        super().__init__(daemon=True)
        self.uri, self.accounts = uri, accounts
        self.acked: list[tuple[int, float]] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        value = 0
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            value += 1
            try:
                if conn is None:
                    conn = psycopg.connect(self.uri, connect_timeout=2)
                with conn.transaction():
                    conn.execute(
                        "UPDATE public.pgbench_accounts SET abalance = abalance + 1 WHERE aid = %s",
                        (value * 7919 % self.accounts + 1,),
                    )
                    conn.execute("INSERT INTO public.upgrade_acks (id) VALUES (%s)", (value,))
                self.acked.append((value, time.monotonic()))  # the COMMIT returned
            except psycopg.Error:
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def longest_gap(self, since: float, until: float) -> float:
        times = [since] + [t for _, t in self.acked if since <= t <= until] + [until]
        return max(b - a for a, b in zip(times, times[1:], strict=False))


def seconds_between(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "?"
    parse = lambda v: datetime.fromisoformat(v.replace("Z", "+00:00"))  # noqa: E731
    return f"{(parse(end) - parse(start)).total_seconds():.1f}s"


def create(stack: Any, token: str, kind: str, scale: int) -> tuple[dict[str, Any], int]:
    body: dict[str, Any] = {"name": f"bench-up-{kind}", "version": "15", "storage": 20}
    if kind == "cluster":
        body["node_count"] = 3
    status, created = stack.request("POST", PATHS[kind], body, token)
    if status != 202:
        raise SystemExit(f"create failed: {status} {created}")
    stack.wait_operation(created["operation_id"], token, timeout=300)
    stack.wait_first_backup(f"{PATHS[kind]}/{created['id']}", token, timeout=600)
    uri = created["credentials"]["uri"]
    started = time.perf_counter()
    password = created["credentials"]["password"]
    load = subprocess.run(
        [str(PG_BIN / "pgbench"), "-i", "-q", "-s", str(scale), uri.replace(f":{password}@", "@")],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password},
    )  # fmt: skip
    if load.returncode != 0:
        raise SystemExit(f"pgbench -i failed: {load.stderr[-2000:]}")
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.upgrade_acks (id bigint PRIMARY KEY)")
        size = int(
            conn.execute("SELECT pg_catalog.pg_database_size(pg_catalog.current_database())").fetchone()[0]
        )
    print(
        f"{kind}: pgbench scale {scale}, {size / 2**20:.0f} MB loaded in {time.perf_counter() - started:.1f}s"
    )
    return created, size


def bench(stack: Any, token: str, kind: str, scale: int) -> int:
    created, size = create(stack, token, kind, scale)
    uri = created["credentials"]["uri"]
    writer = Writer(uri, scale * 100_000)
    writer.start()
    try:
        time.sleep(2)
        started = time.monotonic()
        status, accepted = stack.request(
            "POST",
            f"{PATHS[kind]}/{created['id']}/upgrade",
            {"target_version": "18", "mode": "in_place"},
            token,
        )
        if status != 202:
            raise SystemExit(f"upgrade refused: {status} {accepted}")
        op = stack.wait_operation_any(accepted["operation_id"], token, timeout=UPGRADE_TIMEOUT)
        total = time.monotonic() - started
        deadline = time.monotonic() + 60
        while not any(t > started + total for _, t in writer.acked):
            if time.monotonic() > deadline:
                raise SystemExit("no acknowledged commit after the upgrade")
            time.sleep(0.05)
        time.sleep(1)
    finally:
        writer.stop.set()
        writer.join(15)
    gap = writer.longest_gap(started, time.monotonic())
    acked = {i for i, _ in writer.acked}
    with psycopg.connect(uri, autocommit=True) as conn:
        found = {r[0] for r in conn.execute("SELECT id FROM public.upgrade_acks")}
        version = conn.execute("SHOW server_version").fetchone()[0]
    lost = acked - found
    print(f"\n{kind} upgrade steps (seconds each):")
    for step in op["steps"]:
        print(
            f"  {step['name']} ({seconds_between(step.get('started_at'), step.get('finished_at'))}): {step.get('reason')}"
        )
    print(
        f"\nin-place upgrade benchmark: {kind}, pgbench scale {scale}, {size / 2**20:.0f} MB, 15 -> {version}"
    )
    print(
        f"operation:                                         {op['status']}{'' if op['status'] == 'succeeded' else ' (' + str(op.get('error')) + ')'}"
    )
    print(f"total time (POST -> operation ended):              {total:.1f}s")
    print(f"without a writable server (longest commit gap):    {gap:.1f}s")
    print(f"without a writable server (the operation says):    {op.get('detail', {}).get('down_seconds')}s")
    print(f"acknowledged commits: {len(acked)}; failed attempts: {writer.failures}")
    print(f"acknowledged commits lost:                         {len(lost)}  (must be 0)")
    return len(lost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale: 70 is ~1 GB; 5 for a quick run")
    parser.add_argument("--kind", choices=("single", "cluster", "both"), default="both")
    args = parser.parse_args()
    kinds = ("single", "cluster") if args.kind == "both" else (args.kind,)
    with local_stack() as stack:
        token = stack.token("operator", "acme")
        lost = sum(bench(stack, token, kind, args.scale) for kind in kinds)
    if lost:
        raise SystemExit(f"{lost} acknowledged commits lost")


if __name__ == "__main__":
    main()
