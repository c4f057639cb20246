"""Who may create or grow large objects on a managed server.

Large objects live in `pg_largeobject`, outside every schema: a tenant's schema usage never
counts them, and what suspending writes takes back (memberships, table privileges, ownership)
does not cover functions PUBLIC may execute. So in every database of a managed server the
server-side functions that create or grow a large object are closed to PUBLIC (template1 as
well, so databases created later start closed). Only a database's owner (an instance's
application role, whose database usage counts `pg_largeobject`) gets them back, in its own
database, and loses them while its writes are suspended. Tenants never get them.

Client-side large-object calls (libpq `lo_*`) go through the same functions (fast-path calls
check EXECUTE), so closing these closes them too. Reading, opening and unlinking stay open.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import LiteralString

import psycopg
from psycopg import sql

# Every server's own databases: closed first (template1 so that databases created from it later
# start closed), whoever else may write in the databases of the server.
SERVER_DATABASES = ("template1", "postgres")
# Fixed signatures in pg_catalog (never input): every function that creates a large object or
# makes one longer (lo_truncate extends with zeroes, too).
WRITERS: tuple[LiteralString, ...] = (
    "lo_creat(integer)",
    "lo_create(oid)",
    "lo_from_bytea(oid, bytea)",
    "lo_import(text)",
    "lo_import(text, oid)",
    "lowrite(integer, bytea)",
    "lo_put(oid, bigint, bytea)",
    "lo_truncate(integer, integer)",
    "lo_truncate64(integer, bigint)",
)


def _functions() -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("pg_catalog.{}").format(sql.SQL(signature)) for signature in WRITERS)


def _roles(names: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)


def restrict(
    conn: psycopg.Connection, *, writers: Iterable[str] = (), revoke_from: Iterable[str] = ()
) -> None:
    """In the database of `conn` (a privileged session): PUBLIC and `revoke_from` may not
    execute the writer functions, `writers` may. Idempotent. Every role named must exist."""
    functions, given = _functions(), list(dict.fromkeys(writers))
    conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC").format(functions))
    if taken := [r for r in dict.fromkeys(revoke_from) if r not in given]:
        conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM {}").format(functions, _roles(taken)))
    if given:
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(functions, _roles(given)))


def owner_writers(conn: psycopg.Connection) -> list[str]:
    """Who may write large objects in the database of `conn`: its owner when that is an
    application role (one that logs in and is not a superuser; not the NOLOGIN stand-in that
    holds a suspended application's database), else nobody."""
    row = conn.execute(
        "SELECT r.rolname FROM pg_catalog.pg_database d"
        " JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) d.datdba"
        " WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()"
        " AND r.rolcanlogin AND NOT r.rolsuper"
    ).fetchone()
    return [str(row[0])] if row else []
