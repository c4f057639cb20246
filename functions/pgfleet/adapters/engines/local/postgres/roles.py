"""An application's LOGIN role and the database it owns, over a superuser session (shared
with the Patroni engine)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from pgfleet.adapters.engines.local import large_objects
from pgfleet.adapters.engines.local.sql import AdminSocket, connect
from pgfleet.core.errors import EngineError
from pgfleet.core.models import reserved_database, reserved_role


def ensure_role_and_database(conn: psycopg.Connection, database: str, username: str, password: str) -> str:
    """Create or update the LOGIN role `username` (SCRAM verifier computed here, so the password
    never reaches the server) and the database it owns, over a superuser connection `conn`.
    Large objects may be written by `username` in its database only (see `large_objects`).
    Returns what changed. Raises EngineError for a role or database the platform uses, or a
    role with privileges beyond an application's; psycopg.Error otherwise."""
    # The API refuses these names already; a server must not depend on that.
    if reserved_role(username):
        raise EngineError(f"refusing to manage role {username!r}: the platform uses that name")
    if reserved_database(database):
        raise EngineError(f"refusing to manage database {database!r}: every server has it")
    # A failing statement must not be echoed into the server log, and no logging of
    # statements may catch it either.
    for statement in (
        "SET log_min_error_statement = 'panic'",
        "SET log_statement = 'none'",
        "SET log_min_duration_statement = -1",
        "SET pg_stat_statements.track_utility = off",
    ):
        conn.execute(statement)
    role = conn.execute(
        "SELECT r.rolsuper, r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls"
        "  OR coalesce(pg_catalog.shobj_description(r.oid, 'pg_authid'), '') LIKE 'pgfleet:%%'"
        " FROM pg_catalog.pg_roles r WHERE r.rolname = %s::pg_catalog.name",
        (username,),
    ).fetchone()
    if role is not None and role[0]:
        raise EngineError(f"refusing to manage superuser role {username!r}")
    if role is not None and role[1]:
        raise EngineError(f"refusing to manage role {username!r}: it is not an application's role")
    for shared in large_objects.SERVER_DATABASES:
        with _session(conn, shared) as other:
            large_objects.restrict(other)
    verifier = conn.pgconn.encrypt_password(password.encode(), username.encode(), b"scram-sha-256")
    options = sql.SQL("WITH LOGIN PASSWORD {}").format(sql.Literal(verifier.decode()))
    ident = sql.Identifier(username)
    actions = []
    try:
        if role is None:
            conn.execute(sql.SQL("CREATE ROLE {} {}").format(ident, options))
            actions.append("created role")
    except pg_errors.DuplicateObject:
        role = (False,)  # created concurrently: update it below
    if role is not None:
        conn.execute(sql.SQL("ALTER ROLE {} {}").format(ident, options))
        actions.append("updated role")

    db = sql.Identifier(database)
    owner = conn.execute(
        "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = %s",
        (database,),
    ).fetchone()
    if owner is None:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, ident))
        except pg_errors.DuplicateDatabase:
            owner = ("",)
        else:
            # Tenants share a server: only the owner (and superusers) may connect.
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            actions.append("created database")
    if owner is not None and owner[0] != username:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, ident))
        actions.append("changed database owner")
    with _session(conn, database) as own:
        large_objects.restrict(own, writers=[username])
    with _session(conn, STATS_DATABASE) as stats:
        if ensure_statement_stats(stats):
            actions.append(f"created pg_stat_statements in {STATS_DATABASE}.{STATS_SCHEMA}")
    return ", ".join(actions) if actions else "unchanged"


# pg_stat_statements is preloaded on every server; its view exists where the extension is
# created. The platform creates it once per server in the `postgres` database, in a schema of
# its own that no other role may use (the view shows every database's statements).
STATS_DATABASE = "postgres"
STATS_SCHEMA = "pgfleet_stats"


def ensure_statement_stats(conn: psycopg.Connection) -> bool:
    """Create pg_stat_statements in STATS_SCHEMA of the database `conn` is on, unless the
    extension exists there already (in any schema). True when this call created it."""
    found = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements'"
    ).fetchone()
    if found is not None:
        return False
    schema = sql.Identifier(STATS_SCHEMA)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
    try:
        conn.execute(
            sql.SQL("CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA {}").format(schema)
        )
    except pg_errors.UniqueViolation:
        return False  # created concurrently
    return True


def _session(conn: psycopg.Connection, database: str) -> psycopg.Connection:
    """A privileged session (pinned, as `sql.connect` makes it) on another database of the
    server `conn` is connected to, as the same role over the same socket."""
    info = conn.info
    return connect(AdminSocket(Path(info.host), info.port, info.user), database)
