"""An application's LOGIN role and the database it owns, over a superuser session (shared
with the Patroni engine)."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from pgfleet.core.errors import EngineError


def ensure_role_and_database(conn: psycopg.Connection, database: str, username: str, password: str) -> str:
    """Create or update the LOGIN role `username` (SCRAM verifier computed here, so the password
    never reaches the server) and the database it owns, over a superuser connection `conn`.
    Returns what changed. Raises EngineError for a superuser role, psycopg.Error otherwise."""
    # A failing statement must not be echoed into the server log, and no logging of
    # statements may catch it either.
    for statement in (
        "SET log_min_error_statement = 'panic'",
        "SET log_statement = 'none'",
        "SET log_min_duration_statement = -1",
        "SET pg_stat_statements.track_utility = off",
    ):
        conn.execute(statement)
    role = conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s", (username,)).fetchone()
    if role is not None and role[0]:
        raise EngineError(f"refusing to manage superuser role {username!r}")
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
    return ", ".join(actions) if actions else "unchanged"
