"""The pooler (performance connections/configure). Goal: 200 client connections through
PgBouncer onto a pool of 10, with pgbench `-C` connection churn (a new connection for every
transaction); connects per second with and without the pooler, measured in one run.

One real PostgreSQL 15 server of the local engine; the pooler is configured the way the API
does it (pooling.configure, then the operation run in this process as the worker would: the
lookup role and function through the SQL seam, a real PgBouncer as the data-plane user). The
metadata store is the in-memory fake of the unit tests.

`--clients N` (default 200), `--pool N` (default 10), `--seconds N` per run (default 10),
`--mode` (default transaction).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]

from tests.helpers import free_port, scratch_home  # noqa: E402
from tests.unit.fakes import FakePorts  # noqa: E402

from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine  # noqa: E402
from pgfleet.adapters.engines.local.pgbouncer import LocalPgBouncer  # noqa: E402
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine  # noqa: E402
from pgfleet.adapters.engines.local.sql import LocalSqlTarget  # noqa: E402
from pgfleet.core.auth import PLATFORM, Principal  # noqa: E402
from pgfleet.domains.performance import pooling  # noqa: E402
from pgfleet.domains.performance.pooling_models import ConnectionConfigureRequest  # noqa: E402
from pgfleet.handlers import domains  # noqa: E402
from pgfleet.ports.engine import ServerSpec  # noqa: E402

SERVER_ID = "pgi-00000000bb15"
HOST = "127.0.0.1"
PASSWORD = "bench-app-password"
ADMIN = Principal(sub="bench", tenant_id=PLATFORM, roles=("admin",), permissions=frozenset({PLATFORM}))


def pgbench(uri: str, clients: int, seconds: int) -> dict[str, float]:
    """pgbench -C -S: every transaction opens a new connection (select-only, so the server's
    work is the connection itself)."""
    argv = ["pgbench", "-n", "-C", "-S", "-c", str(clients), "-j", "8", "-T", str(seconds), uri]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    text = out.stdout + out.stderr
    tps = re.search(r"tps = ([0-9.]+)", text)
    conn_ms = re.search(r"average connection time = ([0-9.]+) ms", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    done = re.search(r"number of transactions actually processed: (\d+)", text)
    if tps is None or done is None:
        raise SystemExit(f"pgbench failed ({out.returncode}): {text[-800:]}")
    return {
        "connects_per_s": float(tps.group(1)),
        "connection_ms": float(conn_ms.group(1)) if conn_ms else float("nan"),
        "transactions": float(done.group(1)),
        "failed": float(failed.group(1)) if failed else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--mode", default="transaction", choices=("session", "transaction", "statement"))
    args = parser.parse_args()
    domains.install()
    with scratch_home("pgfleet-bench-pooler-") as home:
        engine = LocalPostgresEngine(home, host=HOST)
        # 4 GB: max_connections 409 by the engine's sizing, so 200 direct clients fit too.
        spec = ServerSpec(SERVER_ID, "15", free_port(), memory_mb=4096, cpu=2)
        ports = FakePorts(home)
        ports.engine = engine
        ports.sql = LocalSqlTarget(engine, LocalPatroniEngine(home, "http://127.0.0.1:1", host=HOST))
        ports.pooler = LocalPgBouncer(home, HOST)
        try:
            engine.provision(spec)
            engine.start(spec)
            engine.ensure_database(SERVER_ID, "app", "app_admin", PASSWORD)
            ports.store.create("instance", {
                "id": SERVER_ID, "tenant_id": "bench", "name": "bench", "status": "running",
                "desired_state": "running", "version": "15", "cpu": 2, "memory": 4096, "storage": 1,
                "endpoint": {"host": HOST, "port": spec.port}, "database": "app", "username": "app_admin",
                "created_at": "2026-01-01T00:00:00Z",
            })  # fmt: skip
            ports.secrets.put(f"instances/{SERVER_ID}/app_admin", PASSWORD)
            body = ConnectionConfigureRequest.model_validate({"targetId": SERVER_ID, "poolerConfiguration": {
                "poolMode": args.mode, "defaultPoolSize": args.pool, "maxClientConnections": args.clients + 50,
            }})  # fmt: skip
            answer = pooling.configure(ports, ADMIN, body)
            ports.drain()
            op = ports.store.get("operation", answer.operation_id)
            assert op["status"] == "succeeded", op
            assert answer.credentials is not None
            direct = f"postgresql://app_admin:{PASSWORD}@{HOST}:{spec.port}/app"
            pooled = answer.credentials.pooler_uri
            subprocess.run(
                ["pgbench", "-i", "-q", "-s", "1", direct], check=True, capture_output=True, timeout=120
            )
            print(
                f"pgbench -C -S, {args.clients} clients, {args.seconds} s each; pooler: {args.mode} pool of {args.pool}"
            )
            results = {"direct": pgbench(direct, args.clients, args.seconds),
                       "pgbouncer": pgbench(pooled, args.clients, args.seconds)}  # fmt: skip
            for name, r in results.items():
                print(
                    f"{name:>10}: {r['connects_per_s']:9.1f} connects/s, avg connection {r['connection_ms']:7.2f} ms, "
                    f"{r['transactions']:.0f} transactions, {r['failed']:.0f} failed"
                )
            ratio = results["pgbouncer"]["connects_per_s"] / max(results["direct"]["connects_per_s"], 0.001)
            print(f"pooler / direct: {ratio:.2f}x connects per second")
        finally:
            ports.pooler.stop(SERVER_ID, remove=True)
            engine.destroy(SERVER_ID)


if __name__ == "__main__":
    main()
