"""Blue/green major-version upgrade of a single instance, PostgreSQL 15 -> 18 (UC8), under a
writer.

Goals: writes refused at the cutover for at most 5 s; acknowledged commits lost: 0.

Everything goes through the API of a local stack (HTTP, worker, real PostgreSQL), like a user
would:
- a PostgreSQL 15 instance loaded with `pgbench -i -s SCALE` (70: ~1 GB); pgbench_history has
  no primary key, so it gets REPLICA IDENTITY FULL (the pre-flight refuses it otherwise);
- a writer that commits continuously through the instance's own URI, one transaction per
  commit (a pgbench-style UPDATE of an account plus an INSERT of the commit's id), recording
  every id whose COMMIT was acknowledged and the major version of the server that took it;
- POST /api/v1/postgres/single/<id>/upgrade {"mode": "blue_green", "target_version": "18"},
  then the operation is polled (its lag shown) until it succeeds;
- every acknowledged id is then read back through the same URI.

Printed: the database size, the total time of the upgrade, the time without writes when blue
restarts for wal_level=logical (before any copy), the seconds of refused writes at the cutover
(from the last commit on 15 to the first on 18, as the writer saw it; and as the operation
measured it), the steps, and the acknowledged commits lost.

    .venv/bin/python bench/bench_upgrade_blue_green.py [--scale 70]
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
GOAL_REFUSED = 5.0
UPGRADE_TIMEOUT = 3600.0
SINGLE = "/api/v1/postgres/single"


class Writer(threading.Thread):
    """Commits one transaction after another through `uri`, reconnecting after a failure;
    remembers each acknowledged id with when it was acknowledged and the major version of the
    server that committed it, and when writes failed."""

    def __init__(self, uri: str, accounts: int) -> None:
        super().__init__(daemon=True)
        self.uri, self.accounts = uri, accounts
        self.acked: list[tuple[int, float, int]] = []  # (id, monotonic time, server major version)
        self.failed_at: list[float] = []
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
                        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = %s",
                        (value * 7919 % self.accounts + 1,),
                    )
                    row = conn.execute(
                        "INSERT INTO upgrade_acks (id) VALUES (%s)"
                        " RETURNING pg_catalog.current_setting('server_version_num')::int / 10000",
                        (value,),
                    ).fetchone()
                # The COMMIT above returned: acknowledged.
                self.acked.append((value, time.monotonic(), int(row[0]) if row else 0))
            except psycopg.Error:
                self.failed_at.append(time.monotonic())
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.02)
        if conn is not None:
            conn.close()

    def cutover_gap(self, old: int, new: int) -> float | None:
        """From the last commit on version `old` to the first on `new`."""
        last_old = max((t for _, t, v in self.acked if v == old), default=None)
        first_new = min((t for _, t, v in self.acked if v == new), default=None)
        return None if last_old is None or first_new is None else first_new - last_old

    def longest_gap(self, since: float, until: float) -> float:
        times = [since] + [t for _, t, _ in self.acked if since <= t <= until] + [until]
        return max(b - a for a, b in zip(times, times[1:], strict=False))


def seconds_between(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "?"
    parse = lambda v: datetime.fromisoformat(v.replace("Z", "+00:00"))  # noqa: E731
    return f"{(parse(end) - parse(start)).total_seconds():.2f}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale: 70 is ~1 GB; 5 for a quick run")
    args = parser.parse_args()

    with local_stack() as stack:
        token = stack.token("operator", "acme")
        body = {"name": "bench-bg", "version": "15", "storage": 20}
        status, created = stack.request("POST", SINGLE, body, token)
        if status != 202:
            raise SystemExit(f"create failed: {status} {created}")
        stack.wait_created(created["operation_id"], token)
        stack.wait_first_backup(f"{SINGLE}/{created['id']}", token, timeout=600)
        uri, password = created["credentials"]["uri"], created["credentials"]["password"]

        started = time.perf_counter()
        env = {**os.environ, "PGPASSWORD": password}
        load = subprocess.run(
            [str(PG_BIN / "pgbench"), "-i", "-q", "-s", str(args.scale), uri.replace(f":{password}@", "@")],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if load.returncode != 0:
            raise SystemExit(f"pgbench -i failed: {load.stderr[-2000:]}")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
            conn.execute(
                "CREATE TABLE upgrade_acks (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
            )
            size = conn.execute(
                "SELECT pg_catalog.pg_database_size(pg_catalog.current_database())"
            ).fetchone()
        print(
            f"pgbench scale {args.scale}: {size[0] / 2**20:.0f} MB loaded in {time.perf_counter() - started:.1f}s"
        )

        writer = Writer(uri, args.scale * 100_000)
        writer.start()
        try:
            time.sleep(2)
            upgrade_started = time.monotonic()
            body = {"target_version": "18", "mode": "blue_green"}
            status, accepted = stack.request("POST", f"{SINGLE}/{created['id']}/upgrade", body, token)
            if status != 202:
                raise SystemExit(f"upgrade refused: {status} {accepted}")
            last_line = ""
            deadline = time.monotonic() + UPGRADE_TIMEOUT
            while True:
                _, op = stack.request("GET", f"/api/v1/operations/{accepted['operation_id']}", token=token)
                detail = op.get("detail") or {}
                line = (
                    f"  {time.monotonic() - upgrade_started:6.1f}s {detail.get('phase')}: tables "
                    f"{detail.get('tables_ready')}/{detail.get('tables_total')}, lag {detail.get('lag_bytes')} bytes"
                )
                if line.split(":", 1)[1] != last_line.split(":", 1)[-1]:
                    print(line)
                    last_line = line
                if op["status"] in ("succeeded", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the upgrade did not finish in {UPGRADE_TIMEOUT:.0f}s: {op}")
                time.sleep(0.5)
            total = time.monotonic() - upgrade_started
            if op["status"] != "succeeded":
                raise SystemExit(f"the upgrade failed: {op['error']}")
            time.sleep(2)
        finally:
            writer.stop.set()
            writer.join(15)

        steps = {s["name"]: s for s in op["steps"]}
        last_on_15 = max((t for _, t, v in writer.acked if v == 15), default=upgrade_started)
        restart_gap = writer.longest_gap(upgrade_started, last_on_15)
        gap = writer.cutover_gap(15, 18)
        acked = {i for i, _, _ in writer.acked}
        with psycopg.connect(uri, autocommit=True) as conn:  # the same URI: the same host:port
            version = conn.execute("SELECT pg_catalog.current_setting('server_version')").fetchone()[0]
            found = {r[0] for r in conn.execute("SELECT id FROM upgrade_acks")}
        lost = acked - found
        print(
            f"upgrade total (POST to succeeded): {total:.1f}s; the instance's URI now answers PostgreSQL {version}"
        )
        for name in ("prepare_blue", "create_green", "initial_copy", "prepare_cutover", "catch_up", "refuse_writes",
                     "wait_applied", "copy_sequences", "stop_replication", "swap_servers", "start_on_endpoint"):  # fmt: skip
            s = steps.get(name) or {}
            print(
                f"  {name}: {seconds_between(s.get('started_at'), s.get('finished_at'))} ({s.get('reason')})"
            )
        print(
            f"writes refused while blue restarted for wal_level=logical: {restart_gap:.2f}s (before any copy)"
        )
        print(
            f"writes refused at the cutover: {gap if gap is None else round(gap, 2)}s (last commit on 15 to first "
            f"on 18, goal <= {GOAL_REFUSED:.0f}s); the operation measured "
            f"{op['detail'].get('writes_refused_seconds')}s"
        )
        on_new = sum(1 for _, _, v in writer.acked if v == 18)
        print(f"acknowledged commits: {len(acked)} ({on_new} on 18); lost: {len(lost)} (goal 0)")
        if lost:
            raise SystemExit(f"lost acknowledged commits: {sorted(lost)[:20]}")


if __name__ == "__main__":
    main()
