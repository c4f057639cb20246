"""Backup and point-in-time restore of a 1 GB database, against pg_dump/pg_restore.

Goals: a full backup of a ~1 GB database (pgbench scale 70) in at most 15 s; a point-in-time
restore into a new instance accepting connections in at most 20 s; that restore at least 3x
faster than pg_restore of a pg_dump -Fc of the same database.

Everything goes through the API of a local stack (HTTP, worker, real PostgreSQL and
pgBackRest), like a user would:
- backup: POST .../backup until its operation succeeds (also printed: pgBackRest's own time);
- restore: POST .../restore {"restore_mode": "new_instance", "pitr_target"} until psycopg
  connects to the new instance with the credentials the POST returned, then the rows are
  checked (exactly those committed before the target);
- beside it: pg_dump -Fc of the same database, pg_restore into an empty database (the goal's
  comparison), and pg_restore -j 2 (printed too: parallel restore on both cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from _stack import local_stack

from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCALE = 70
GOALS = {"backup": 15.0, "restore": 20.0, "ratio": 3.0}


def settle() -> None:
    """Start a measurement from a quiet disk: write back what earlier phases left dirty (a
    1 GB load leaves gigabytes in the page cache), so no phase pays for another's writes."""
    os.sync()
    time.sleep(1)


def run(argv: list[str], what: str) -> float:
    settle()
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - started


def connect_until_ready(uri: str, timeout: float = 300) -> psycopg.Connection:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(uri, connect_timeout=2, autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def step_seconds(step: dict) -> float:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (at(step["finished_at"]) - at(step["started_at"])).total_seconds()


def verdict(value: float, goal: float, smaller_is_better: bool = True) -> str:
    ok = value <= goal if smaller_is_better else value >= goal
    return "PASS" if ok else "FAIL"


def main() -> int:
    with local_stack() as stack:
        token = stack.token("operator", "bench")

        def wait(op_id: str) -> dict:
            return stack.wait_operation(op_id, token, timeout=900)

        status, created = stack.request(
            "POST", "/api/v1/postgres/single", {"name": "bench-src", "memory": 2048}, token
        )
        assert status == 202, created
        wait(created["operation_id"])
        source, uri = created["id"], created["credentials"]["uri"]
        print(f"pgbench -i -s {SCALE} ...", flush=True)
        took = run([str(PG_BIN / "pgbench"), "-i", "-s", str(SCALE), "-I", "dtGvp", "-q", uri], "pgbench -i")
        with psycopg.connect(uri, autocommit=True) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            conn.execute("CREATE TABLE marks (phase int, at timestamptz DEFAULT clock_timestamp())")
        print(f"  loaded {size / 1e9:.2f} GB in {took:.1f}s")

        settle()
        started = time.perf_counter()
        status, accepted = stack.request(
            "POST", f"/api/v1/postgres/single/{source}/backup", {"type": "full"}, token
        )
        assert status == 202, accepted
        wait(accepted["operation_id"])
        backup_s = time.perf_counter() - started
        _, listing = stack.request("GET", f"/api/v1/backup/status/{accepted['backup_id']}", token=token)
        print(f"full backup: {backup_s:.2f}s through the API (pgBackRest: {listing['duration']:.0f}s), "
              f"{listing['backupSize'] / 1e6:.0f} MB stored  [goal <= {GOALS['backup']:.0f}s: "
              f"{verdict(backup_s, GOALS['backup'])}]")  # fmt: skip

        # pgBackRest records stop times to the second: a target is served by this backup from one
        # second after its stop on (before, by the previous backup and much more WAL).
        time.sleep(1.5)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("INSERT INTO marks (phase) VALUES (1)")
            time.sleep(0.2)
            target = datetime.now(UTC)
            time.sleep(0.2)
            conn.execute("INSERT INTO marks (phase) VALUES (2)")

        settle()
        started = time.perf_counter()
        body = {"restore_mode": "new_instance", "pitr_target": target.isoformat()}
        status, restored = stack.request("POST", f"/api/v1/postgres/single/{source}/restore", body, token)
        assert status == 202, restored
        with connect_until_ready(restored["credentials"]["uri"]) as conn:
            restore_s = time.perf_counter() - started
            phases = [row[0] for row in conn.execute("SELECT phase FROM marks ORDER BY phase").fetchall()]
            accounts = conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0]
        assert phases == [1] and accounts == SCALE * 100_000, (phases, accounts)
        print(f"PITR restore to a new instance, accepting connections: {restore_s:.2f}s "
              f"[goal <= {GOALS['restore']:.0f}s: {verdict(restore_s, GOALS['restore'])}]")  # fmt: skip
        print(
            "  steps: "
            + ", ".join(
                f"{s['name']} {step_seconds(s):.1f}s" for s in wait(restored["operation_id"])["steps"]
            )
        )

        restore_log = (stack.home / "pgbackrest" / "log" / f"{source}-restore.log").read_text()
        print(
            f"  pgBackRest restore itself: {restore_log.rsplit('completed successfully (', 1)[1].split(')')[0]}"
        )
        dump = stack.home / "bench.dump"
        dump_s = run([str(PG_BIN / "pg_dump"), "-Fc", "-f", str(dump), uri], "pg_dump")
        engine = LocalPostgresEngine(stack.home / "data")
        socket = engine.paths(source).socket
        port = created["endpoint"]["port"]
        restore_argv = [str(PG_BIN / "pg_restore"), "-h", str(socket), "-p", str(port), "-U", "postgres"]
        logical: dict[str, float] = {}
        for label, options in (("pg_restore", []), ("pg_restore -j 2", ["-j", "2"])):
            database = "logical_copy_" + str(len(logical))
            with engine.connect(source) as conn:
                conn.execute(f"CREATE DATABASE {database}")  # a constant name, nothing from outside
            argv = [*restore_argv, *options, "--no-owner", "-d", database, str(dump)]
            logical[label] = run(argv, label)
        ratio = logical["pg_restore"] / restore_s
        print(f"pg_dump -Fc: {dump_s:.2f}s ({dump.stat().st_size / 1e6:.0f} MB); "
              + "; ".join(f"{label}: {took:.2f}s" for label, took in logical.items()))  # fmt: skip
        print(f"restore speed-up over pg_restore: {ratio:.1f}x  [goal >= {GOALS['ratio']:.0f}x: "
              f"{verdict(ratio, GOALS['ratio'], smaller_is_better=False)}]; over pg_restore -j 2: "
              f"{logical['pg_restore -j 2'] / restore_s:.1f}x; over pg_dump + pg_restore: "
              f"{(dump_s + logical['pg_restore']) / restore_s:.1f}x")  # fmt: skip
        for resource in (restored["target_id"], source):
            stack.request("DELETE", f"/api/v1/postgres/single/{resource}", token=token)
        ok = backup_s <= GOALS["backup"] and restore_s <= GOALS["restore"] and ratio >= GOALS["ratio"]
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
