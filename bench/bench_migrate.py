"""Migration of a single instance into a 3-node cluster (UC8) under a writer, manual cutover.

Goals: writes refused at the cutover for at most 5 s; acknowledged commits lost: 0.

Everything goes through the API of a local stack (HTTP, worker, real PostgreSQL, Patroni,
HAProxy), like a user would:
- a single instance loaded with `pgbench -i -s SCALE` (70: ~1 GB);
- a writer that commits continuously through the instance's own URI (the old endpoint, all
  along: after the cutover it forwards to the cluster's primary), one transaction per commit
  (a pgbench-style UPDATE of an account plus an INSERT of the commit's id), recording every
  id whose COMMIT was acknowledged;
- POST /api/v1/postgres/migrate (cutover_mode manual) until the migration is ready, then
  POST .../cutover until it is completed;
- every acknowledged id is then read back on the new primary (its multi-host URI).

Printed: the database size, the build (copy + catch-up) time, the cutover time (POST to
completed), the seconds of refused writes (the longest time without an acknowledged commit
around the cutover, and from its first to its last failed write), the cutover's steps, and
the acknowledged commits lost.

    .venv/bin/python bench/bench_migrate.py [--scale 70] [--nodes 3]
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
BUILD_TIMEOUT = 1800.0
CUTOVER_TIMEOUT = 300.0
MIGRATE = "/api/v1/postgres/migrate"


class Writer(threading.Thread):
    """Commits one transaction after another through `uri`, reconnecting after a failure;
    remembers each acknowledged id with when it was acknowledged, and when writes failed."""

    def __init__(self, uri: str, password: str, accounts: int) -> None:
        super().__init__(daemon=True)
        self.uri, self.password, self.accounts = uri, password, accounts
        self.acked: list[tuple[int, float, int]] = []  # (id, monotonic time, port that committed it)
        self.failed_at: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        value = 0
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            value += 1
            try:
                if conn is None:
                    conn = psycopg.connect(self.uri, password=self.password, connect_timeout=2)
                with conn.transaction():
                    conn.execute(
                        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = %s",
                        (value * 7919 % self.accounts + 1,),
                    )
                    row = conn.execute(
                        "INSERT INTO migrate_acks (id) VALUES (%s) RETURNING pg_catalog.inet_server_port()",
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

    def longest_gap(self, since: float, until: float) -> float:
        """The longest time without an acknowledged commit within [since, until]."""
        times = [since] + [t for _, t, _ in self.acked if since <= t <= until] + [until]
        return max(b - a for a, b in zip(times, times[1:], strict=False))

    def failing_for(self, since: float, until: float) -> float:
        window = [t for t in self.failed_at if since <= t <= until]
        return (max(window) - min(window)) if window else 0.0


def seconds_between(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "?"
    parse = lambda v: datetime.fromisoformat(v.replace("Z", "+00:00"))  # noqa: E731
    return f"{(parse(end) - parse(start)).total_seconds():.2f}s"


def wait_phase(stack: Any, token: str, mid: str, phase: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, got = stack.request("GET", f"{MIGRATE}/{mid}", token=token)
        if status != 200 or got["phase"] == "failed":
            raise SystemExit(f"the migration failed: {got}")
        if got["phase"] == phase:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"the migration is not {phase} after {timeout:.0f}s: {got}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale: 70 is ~1 GB; 5 for a quick run")
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()

    with local_stack() as stack:
        token = stack.token("operator", "acme")
        status, source = stack.request(
            "POST",
            "/api/v1/postgres/single",
            {"name": "bench-migrate", "storage": 20},
            token,
        )
        if status != 202:
            raise SystemExit(f"create failed: {status} {source}")
        stack.wait_created(source["operation_id"], token)
        creds = source["credentials"]
        uri, password = creds["uri"], creds["password"]

        started = time.perf_counter()
        env = {**os.environ, "PGPASSWORD": password}
        load = subprocess.run(
            [str(PG_BIN / "pgbench"), "-i", "-q", "-s", str(args.scale), uri.replace(f":{password}@", "@")],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if load.returncode != 0:
            raise SystemExit(f"pgbench -i failed: {load.stderr[-2000:]}")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE migrate_acks (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
            )
            size = conn.execute(
                "SELECT pg_catalog.pg_database_size(pg_catalog.current_database())"
            ).fetchone()[0]
        print(
            f"pgbench scale {args.scale}: {size / 2**20:.0f} MB loaded in {time.perf_counter() - started:.1f}s"
        )

        writer = Writer(uri, password, args.scale * 100_000)
        writer.start()
        try:
            built_started = time.monotonic()
            body = {"source_id": source["id"], "target_type": "cluster", "node_count": args.nodes,
                    "cutover_mode": "manual"}  # fmt: skip
            status, migration = stack.request("POST", MIGRATE, body, token)
            if status != 202:
                raise SystemExit(f"migrate failed: {status} {migration}")
            mid = migration["id"]
            ready = wait_phase(stack, token, mid, "ready", BUILD_TIMEOUT)
            built = time.monotonic() - built_started
            print(
                f"cluster of {args.nodes} built and caught up in {built:.1f}s (lag {ready['lag_bytes']} bytes)"
            )
            if writer.failed_at:
                raise SystemExit(f"the source refused {len(writer.failed_at)} writes before the cutover")
            time.sleep(2)

            cut_started = time.monotonic()
            status, cut = stack.request("POST", f"{MIGRATE}/{mid}/cutover", token=token)
            if status != 202:
                raise SystemExit(f"cutover refused: {status} {cut}")
            done = wait_phase(stack, token, mid, "completed", CUTOVER_TIMEOUT)
            cut_done = time.monotonic()
            _, cluster = stack.request("GET", f"/api/v1/postgres/cluster/{done['cluster_id']}", token=token)
            node_ports = {n["endpoint"]["port"] for n in cluster["nodes"]}
            deadline = time.monotonic() + 60
            while not any(p in node_ports for _, t, p in writer.acked if t >= cut_started):
                if time.monotonic() > deadline:
                    raise SystemExit("no write through the old URI reached the cluster after the cutover")
                time.sleep(0.05)
            resumed = time.monotonic()
            time.sleep(2)
        finally:
            writer.stop.set()
            writer.join(15)

        window_end = resumed + 0.5
        gap = writer.longest_gap(cut_started, window_end)
        failing = writer.failing_for(cut_started, window_end)
        acked = {i for i, _, _ in writer.acked}
        on_cluster = sum(1 for _, _, p in writer.acked if p in node_ports)
        with psycopg.connect(done["target"]["uri"], password=password, autocommit=True) as conn:
            found = {r[0] for r in conn.execute("SELECT id FROM migrate_acks")}
        lost = acked - found
        with psycopg.connect(uri, password=password, autocommit=True) as conn:  # the old URI
            via_old = conn.execute("SELECT pg_catalog.inet_server_port()").fetchone()[0]

        _, op = stack.request("GET", f"/api/v1/operations/{done['cutover_operation_id']}", token=token)
        print("\ncutover steps (seconds each):")
        for step in op["steps"]:
            took = seconds_between(step.get("started_at"), step.get("finished_at"))
            print(f"  {step['name']} ({took}): {step.get('reason')}")
        verdict = "met" if gap <= GOAL_REFUSED else "MISSED"
        print(
            f"\nmigrate benchmark (pgbench scale {args.scale}, {size / 2**20:.0f} MB, {args.nodes} nodes, manual cutover)"
        )
        print(f"build (copy + catch-up) -> ready:                 {built:.1f}s")
        print(f"cutover (POST .../cutover -> completed):           {cut_done - cut_started:.2f}s")
        print(
            f"writes refused (longest gap without a commit):     {gap:.2f}s  (goal <= {GOAL_REFUSED:.0f}s: {verdict})"
        )
        print(
            f"writes refused (first to last failed write):       {failing:.2f}s ({len(writer.failed_at)} failed attempts)"
        )
        print(
            f"acknowledged commits: {len(acked)} ({len(acked) - on_cluster} on the source, {on_cluster} on the cluster)"
        )
        print(f"acknowledged commits lost:                         {len(lost)}  (must be 0)")
        print(f"the old URI now reaches port {via_old} (cluster nodes: {sorted(node_ports)})")
        if lost:
            raise SystemExit(f"{len(lost)} acknowledged commits lost, e.g. {sorted(lost)[:5]}")


if __name__ == "__main__":
    main()
