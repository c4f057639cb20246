"""Physical replication seen from the source: slots, standbys and their lag, and the
settings a hot standby may not set below its source's."""

from __future__ import annotations

import time

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from pgfleet.adapters.engines.local.postgres.config import HOT_STANDBY_MINIMUMS
from pgfleet.core.errors import EngineError
from pgfleet.ports.engine import ReplicaLag

# How long dropping a slot waits for the walsender of a disconnected standby to exit.
SLOT_RELEASE_TIMEOUT_S = 10


def hot_standby_minimums(conn: psycopg.Connection) -> dict[str, int]:
    """The source's values of the settings a hot standby may not set lower."""
    rows = conn.execute(
        "SELECT name, setting FROM pg_catalog.pg_settings WHERE name OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.text[])",
        (list(HOT_STANDBY_MINIMUMS),),
    ).fetchall()
    return {str(name): int(value) for name, value in rows}


def ensure_replication_role(conn: psycopg.Connection, username: str, password: str) -> str:
    """Create or update the REPLICATION LOGIN role `username` with `password` (SCRAM verifier
    computed here, statement logging off, so neither reaches a log)."""
    for statement in (
        "SET log_min_error_statement = 'panic'",
        "SET log_statement = 'none'",
        "SET log_min_duration_statement = -1",
        "SET pg_stat_statements.track_utility = off",
    ):
        conn.execute(statement)
    verifier = conn.pgconn.encrypt_password(password.encode(), username.encode(), b"scram-sha-256")
    exists = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s::pg_catalog.name", (username,)
    ).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(verb + " ROLE {} WITH REPLICATION LOGIN PASSWORD {}").format(
            sql.Identifier(username), sql.Literal(verifier.decode())
        )
    )
    return f"{'updated' if exists else 'created'} replication role {username}"


def apply_read_only(conn: psycopg.Connection, enabled: bool) -> int:
    """default_transaction_read_only on (or reset) persistently, reloaded; when on, every client
    session but this one terminated (waiting for each to exit). The WAL position after."""
    if enabled:
        conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
    else:
        conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
    loaded = conn.execute("SELECT pg_catalog.pg_conf_load_time()").fetchone()
    conn.execute("SELECT pg_catalog.pg_reload_conf()")
    # The postmaster reloads asynchronously: wait until it has (a session's load time is the
    # postmaster's at fork), so no session forked from now on starts read-write.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with psycopg.connect(conn.info.dsn, autocommit=True) as probe:
            if probe.execute("SELECT pg_catalog.pg_conf_load_time()").fetchone() != loaded:
                break
        time.sleep(0.05)
    if enabled:
        conn.execute(
            "SELECT pg_catalog.pg_terminate_backend(pid, 5000) FROM pg_catalog.pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid()"
        )
    return wal_position(conn)


def wal_position(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::pg_catalog.int8"
    ).fetchone()
    return int(row[0]) if row else 0


def ensure_physical_slot(conn: psycopg.Connection, slot: str) -> str:
    """Create the physical slot `slot`, reserving WAL from now on, unless it exists."""
    try:
        conn.execute(
            "SELECT pg_catalog.pg_create_physical_replication_slot(%s::pg_catalog.name, true)", (slot,)
        )
    except pg_errors.DuplicateObject:
        return f"slot {slot} exists"
    return f"created slot {slot}"


def replica_lag(conn: psycopg.Connection) -> list[ReplicaLag]:
    """Every physical slot and every connected standby of the server, with replay lag.

    A disconnected slot's lag is the WAL it makes the server keep (from its restart_lsn).
    """
    rows = conn.execute(
        "SELECT s.slot_name, coalesce(r.application_name, ''), coalesce(r.state, 'disconnected'),"
        " coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), coalesce(r.replay_lsn, s.restart_lsn)), 0)::pg_catalog.int8,"
        " CASE WHEN r.pid IS NOT NULL THEN coalesce(extract(epoch FROM r.replay_lag), 0) END::pg_catalog.float8"
        " FROM pg_catalog.pg_replication_slots s FULL JOIN pg_catalog.pg_stat_replication r"
        " ON r.pid OPERATOR(pg_catalog.=) s.active_pid"
        " WHERE s.slot_type IS DISTINCT FROM 'logical'"
        " ORDER BY s.slot_name, r.application_name"
    ).fetchall()
    return [
        ReplicaLag(
            slot=slot,
            application_name=str(name),
            state=str(state),
            lag_bytes=max(0, int(lag_bytes)),
            lag_seconds=None if lag_seconds is None else float(lag_seconds),
        )
        for slot, name, state, lag_bytes, lag_seconds in rows
    ]


def drop_physical_slot(conn: psycopg.Connection, slot: str) -> str:
    """Drop `slot`, terminating the walsender still holding it (a standby that is going
    away, or one that reconnected in the meantime). Returns what happened."""
    deadline = time.monotonic() + SLOT_RELEASE_TIMEOUT_S
    while True:
        row = conn.execute(
            "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) %s::pg_catalog.name",
            (slot,),
        ).fetchone()
        if row is None:
            return f"slot {slot} already dropped"
        if row[0] is not None:
            conn.execute("SELECT pg_catalog.pg_terminate_backend(%s::pg_catalog.int4)", (row[0],))
        try:
            conn.execute("SELECT pg_catalog.pg_drop_replication_slot(%s::pg_catalog.name)", (slot,))
            return f"dropped slot {slot}"
        except pg_errors.UndefinedObject:
            return f"slot {slot} already dropped"
        except pg_errors.ObjectInUse:
            # The terminated walsender has not exited yet.
            if time.monotonic() >= deadline:
                raise EngineError(f"slot {slot} is still in use after {SLOT_RELEASE_TIMEOUT_S}s") from None
            time.sleep(0.1)
