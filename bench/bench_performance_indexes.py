"""Index advice (performance). Goals: `indexes/analysis` of a database with 500 tables and
1,500 indexes in <= 3 s; after `optimize`, the statement that lacked the index runs at least
10x faster (mean time before, from pg_stat_statements, against the mean over the calls after
the build, measured in this run).

One real PostgreSQL 15 server of the local engine (hypopg from Debian), through the SQL seam;
the metadata store is the in-memory fake of the unit tests (the analysis writes one record
per database to it), the operation runs in this process as the worker would run it.

The database also holds pgbench's tables at `--scale N` (default 20), loaded and exercised by
`pgbench` itself as the app role (its TPC-B workload for `--pgbench-seconds`): their statements
are among the heavy ones, and every one of them already has its index, so the advice must
name `big(email)` and nothing else.

`--tables N` (default 500; 3 indexes each), `--rows N` for the table read by a non-indexed
column (default 1,000,000), `--rounds N` analyses timed (default 5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]

import psycopg  # noqa: E402
from tests.helpers import free_port, scratch_home  # noqa: E402
from tests.unit.fakes import FakePorts  # noqa: E402

from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine  # noqa: E402
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine  # noqa: E402
from pgfleet.adapters.engines.local.postgres.roles import ensure_role_and_database  # noqa: E402
from pgfleet.adapters.engines.local.sql import LocalSqlTarget  # noqa: E402
from pgfleet.core import operations  # noqa: E402
from pgfleet.core.auth import Principal  # noqa: E402
from pgfleet.domains.performance import indexes, workflows  # noqa: E402
from pgfleet.handlers import domains  # noqa: E402
from pgfleet.ports.engine import ServerSpec  # noqa: E402

SERVER_ID = "pgi-00000000be15"
CALLER = Principal("bench", "bench", ("operator",))


def _app(engine: LocalPostgresEngine) -> psycopg.Connection:
    info = engine.admin_socket(SERVER_ID)
    conn = psycopg.connect(
        host=str(info.socket), port=info.port, user="postgres", dbname="shop", autocommit=True
    )
    conn.execute("SET ROLE shop_app")
    return conn


def _reads(engine: LocalPostgresEngine, calls: int) -> None:
    with _app(engine) as conn:
        for i in range(calls):
            conn.execute(
                "SELECT id, note FROM public.big WHERE email = %s", (f"user{i * 997 + 1}@example.com",)
            )


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _pgbench(engine: LocalPostgresEngine, *args: str) -> str:
    """pgbench over the server's socket as the app role (PGOPTIONS sets the role at connect)."""
    info = engine.admin_socket(SERVER_ID)
    env = {**os.environ, "PGOPTIONS": "-c role=shop_app"}
    argv = [
        str(PG_BIN / "pgbench"),
        "-h",
        str(info.socket),
        "-p",
        str(info.port),
        "-U",
        "postgres",
        *args,
        "shop",
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=900)
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, default=500)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--pgbench-seconds", type=int, default=20)
    args = parser.parse_args()
    domains.install()
    with scratch_home("pgfleet-bench-indexes-") as home:
        engine = LocalPostgresEngine(home, host="127.0.0.1")
        spec = ServerSpec(SERVER_ID, "15", free_port(), memory_mb=1024)
        engine.provision(spec)
        engine.start(spec)
        try:
            ports = FakePorts(home)
            ports.sql = LocalSqlTarget(
                engine, LocalPatroniEngine(home, "http://127.0.0.1:1", host="127.0.0.1")
            )
            ports.store.create("instance", {
                "id": SERVER_ID, "tenant_id": "bench", "status": "running", "desired_state": "running",
                "database": "shop", "username": "shop_app", "endpoint": {"host": "127.0.0.1", "port": spec.port},
                "name": "shop", "created_at": "2026-01-01T00:00:00Z",
            })  # fmt: skip
            ports.secrets.put(f"instances/{SERVER_ID}/shop_app", "bench-password-1")
            t0 = time.perf_counter()
            with engine.connect(SERVER_ID) as conn:
                ensure_role_and_database(conn, "shop", "shop_app", "bench-password-1")
            with _app(engine) as conn:
                for i in range(args.tables):
                    conn.execute(
                        f"CREATE TABLE public.t{i} (id bigserial PRIMARY KEY, a int, b text, c date);"  # noqa: S608 (fixed names)
                        f"CREATE INDEX t{i}_a_idx ON public.t{i} (a); CREATE INDEX t{i}_a_b_idx ON public.t{i} (a, b);"
                        f"INSERT INTO public.t{i} (a, b, c) SELECT g, g::text, current_date FROM generate_series(1, 50) g"
                    )
                conn.execute(
                    "CREATE TABLE public.big (id bigserial PRIMARY KEY, email text NOT NULL, note text);"  # noqa: S608
                    "INSERT INTO public.big (email, note) SELECT 'user' || g || '@example.com', md5(g::text)"
                    f" FROM generate_series(1, {args.rows}) g"
                )
                conn.execute("ANALYZE")
            loaded = time.perf_counter()
            _pgbench(engine, "-i", "-q", "-s", str(args.scale))
            print(f"pgbench -i -s {args.scale}: {time.perf_counter() - loaded:.1f} s")
            with engine.connect(SERVER_ID, "shop") as conn:
                conn.execute("SELECT pg_catalog.pg_stat_reset()")
            with engine.connect(SERVER_ID) as conn:
                conn.execute("SELECT pgfleet_stats.pg_stat_statements_reset()")
            print(f"schema: {args.tables} tables, {3 * args.tables + 1} indexes, {args.rows} rows in big "
                  f"({time.perf_counter() - t0:.1f} s)")  # fmt: skip
            _reads(engine, args.calls)
            tps = [
                ln
                for ln in _pgbench(engine, "-c", "4", "-T", str(args.pgbench_seconds)).splitlines()
                if "tps" in ln
            ]
            print(f"pgbench workload: {tps[-1].strip() if tps else '?'}")

            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                result = indexes.analyze(ports, CALLER, SERVER_ID, None)
                times.append(time.perf_counter() - started)
            creates = [r for r in result.recommendations if r.type == "CREATE"]
            print(
                f"indexes/analysis of {result.summary.total_indexes} indexes: p50 {statistics.median(times):.3f} s, "
                f"max {max(times):.3f} s over {args.rounds} runs (goal <= 3 s); {result.summary.unused_indexes} unused, "
                f"{result.summary.duplicate_indexes} duplicate, {len(creates)} to create"
            )
            for rec in creates:
                print(f"  {rec.priority} {rec.sql} ({rec.estimated_benefit:.1f}% less cost)")
            assert [(r.table_name, r.columns) for r in creates] == [("big", ["email"])], creates

            rec = creates[0]
            record, _ = indexes.find_recommendation(ports, CALLER, rec.id)
            op = workflows.start(ports, record, [rec.id], 5000)
            started = time.perf_counter()
            line = operations.run(ports, op["id"])
            print(f"optimize: {line} in {time.perf_counter() - started:.1f} s")
            _reads(engine, args.calls)
            _, applied = indexes.find_recommendation(ports, CALLER, rec.id)
            measured = workflows.measured_after(ports, record, applied)
            factor = measured.get("improvement_factor")
            print(
                f"mean time of the statement: before {measured['mean_time_ms_before']:.3f} ms, after "
                f"{measured['mean_time_ms_after']:.3f} ms over {measured['sample_runs']} calls: {factor}x "
                f"(goal >= 10x); plan uses the index: {measured['plan_uses_index']}; planned cost "
                f"{measured['cost_before']:.1f} -> {measured['cost_after']:.1f}"
            )
        finally:
            engine.destroy(SERVER_ID)


if __name__ == "__main__":
    main()
