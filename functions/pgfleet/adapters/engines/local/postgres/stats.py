"""Live statistics of a server, over a superuser session (shared with the Patroni engine)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from pgfleet.core.errors import EngineError
from pgfleet.ports.engine import ServerStats


def collect_stats(conn: psycopg.Connection, database: str) -> ServerStats:
    """Live statistics of the server behind `conn`, sized for `database`. Raises EngineError
    for a missing database, psycopg.Error otherwise."""
    size = conn.execute(
        "SELECT pg_catalog.pg_database_size(oid) FROM pg_catalog.pg_database"
        " WHERE datname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
        (database,),
    ).fetchone()
    if size is None:
        raise EngineError(f"database {database!r} does not exist")
    # Client backends only, and not this very connection.
    active, idle, total = conn.execute(
        "SELECT pg_catalog.count(*) FILTER (WHERE state = 'active'),"
        " pg_catalog.count(*) FILTER (WHERE state = 'idle'), pg_catalog.count(*)"
        " FROM pg_catalog.pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
    ).fetchone() or (0, 0, 0)
    max_connections = int(
        (conn.execute("SELECT pg_catalog.current_setting('max_connections')").fetchone() or ("0",))[0]
    )
    uptime, commits, rollbacks, deadlocks, hits, reads = conn.execute(
        "SELECT extract(epoch FROM pg_catalog.now() - pg_catalog.pg_postmaster_start_time())::pg_catalog.float8,"
        " coalesce(pg_catalog.sum(xact_commit), 0)::pg_catalog.int8, coalesce(pg_catalog.sum(xact_rollback), 0)::pg_catalog.int8,"
        " coalesce(pg_catalog.sum(deadlocks), 0)::pg_catalog.int8, coalesce(pg_catalog.sum(blks_hit), 0)::pg_catalog.int8,"
        " coalesce(pg_catalog.sum(blks_read), 0)::pg_catalog.int8 FROM pg_catalog.pg_stat_database"
    ).fetchone() or (0.0, 0, 0, 0, 0, 0)
    return ServerStats(
        connections_active=int(active),
        connections_idle=int(idle),
        connections_total=int(total),
        connections_max=max_connections,
        database_size_bytes=int(size[0]),
        uptime_seconds=float(uptime),
        commits=int(commits),
        rollbacks=int(rollbacks),
        # Nothing read at all means nothing missed the cache.
        cache_hit_ratio=hits / (hits + reads) if hits + reads else 1.0,
        deadlocks=int(deadlocks),
        collected_at=datetime.now(UTC),
    )
