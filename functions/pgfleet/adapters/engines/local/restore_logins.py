"""The roles a logical restore runs as, and the short-lived logins it runs through.

Restoring a dump runs the code it holds (a CHECK constraint calls its function for every row
loaded, a generated column computes, an extension script runs), so it must run with the
privileges of whoever owns that code, never a superuser's. `pg_restore --role` alone is not
enough: it connects as the superuser and then `SET ROLE`s, and any function may `RESET ROLE`
back to the session's superuser. So each role is restored through a login of its own
(`pgfleet_restore_<hash>`): NOINHERIT, a member of that one role only, CONNECT on the one
database, a random password valid for minutes, dropped when the restore ends. A function
that resets the role ends up as that login, which can do nothing the role cannot.

Only a role a customer could own things as is restored as: one without superuser,
CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, not a member of a predefined role, and not one
of the platform's own (tenant roles and the stand-ins of suspended applications are the
customers'). An entry owned by anyone else (the superuser, a role gone since) is restored as
the restore's `owner`, or refused when there is none.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from pgfleet.adapters.engines.local.database_admin import FROZEN_TAG, QUIET_SESSION, TAG_PREFIX
from pgfleet.adapters.engines.local.logical_dump import TocEntry
from pgfleet.core.errors import EngineError
from pgfleet.core.models import reserved_role

LOGIN_PREFIX = "pgfleet_restore_"
LOGIN_TAG = "pgfleet:restore"
# A login may authenticate this long after it is armed (right before its pg_restore starts);
# a session already open is not cut off when it expires.
LOGIN_VALIDITY = timedelta(minutes=10)
DATABASE_OWNER = "pg_database_owner"  # may own a schema (public), cannot be logged in as

CANDIDATES = """
SELECT r.rolname, coalesce(pg_catalog.shobj_description(r.oid, 'pg_authid'), '')
FROM pg_catalog.pg_roles r
WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.name[])
  AND NOT (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls)
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_roles g
      WHERE g.rolname LIKE 'pg\\_%%' AND g.rolname OPERATOR(pg_catalog.<>) 'pg_database_owner'
        AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER'))
"""


@dataclass(frozen=True)
class RestoreRoles:
    """Who restores what: `usable` are the roles named by a dump that it may be restored as;
    `fallback` (the restore's owner, when usable) restores every other entry."""

    usable: frozenset[str]
    fallback: str | None

    @classmethod
    def resolve(
        cls, conn: psycopg.Connection, entries: Iterable[TocEntry], owner: str | None
    ) -> RestoreRoles:
        """The roles for `entries` on the server of `conn` (a privileged session). Raises
        EngineError, before anything is changed, when some entry would have no role."""
        entries = list(entries)
        names = sorted({e.owner for e in entries if e.owner} | ({owner} if owner else set()))
        rows = conn.execute(CANDIDATES, (names,)).fetchall()
        usable = frozenset(
            str(name)
            for name, tag in rows
            if not reserved_role(str(name)) or str(tag).startswith(TAG_PREFIX) or tag == FROZEN_TAG
        )
        if owner and owner not in usable:
            raise EngineError(
                f"cannot restore as {owner!r}: a restore runs as the role that owns what it restores,"
                " and that role does not exist or holds privileges beyond an application's"
            )
        roles = cls(usable=usable, fallback=owner or None)
        orphans = sorted(
            {
                e.owner or "(nobody: an extension, say)"
                for e in entries
                if not e.catalog  # the server's own policy, applied by the host
                and not (e.schema is not None and e.owner == DATABASE_OWNER)
                and roles.role_for(e.owner) is None
            }
        )
        if orphans:
            raise EngineError(
                "cannot restore objects owned by " + ", ".join(orphans) + ": a restore never runs as a"
                " superuser, and no role here may own them (create the tenant again first, or name"
                " an owner)"
            )
        return roles

    def role_for(self, owner: str) -> str | None:
        """The role that restores an entry the dump says `owner` owns; None when none may."""
        return owner if owner in self.usable else self.fallback

    def run_as(self, owner: str) -> str:
        role = self.role_for(owner)
        if role is None:  # resolve() refused such dumps already
            raise EngineError(f"no role may restore objects owned by {owner or '(none)'}")
        return role

    def schema_owner(self, owner: str) -> str:
        """Who owns a schema the restoring side creates (pg_database_owner, as for `public`
        after initdb, may own one even though nobody restores as it)."""
        return owner if owner == DATABASE_OWNER else self.run_as(owner)


def login_for(role: str) -> str:
    """The login a restore runs through to act as `role` (a hash keeps it within 63 bytes)."""
    return LOGIN_PREFIX + hashlib.sha256(role.encode()).hexdigest()[:16]


def arm(conn: psycopg.Connection, role: str, database: str) -> tuple[str, str]:
    """Create (or re-arm) the login for `role` with a new random password valid for
    LOGIN_VALIDITY, allowed into `database` only, over `conn` (a privileged session on the
    maintenance database). Returns (login, password); the password is never logged."""
    login = login_for(role)
    password = secrets.token_urlsafe(32)
    for statement in QUIET_SESSION:
        conn.execute(statement)
    ident = sql.Identifier(login)
    tag = _tag(conn, login)
    if tag is None:
        try:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(ident))
        except pg_errors.DuplicateObject:
            tag = _tag(conn, login)  # created concurrently: judged below
        else:
            conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(LOGIN_TAG)))
            tag = LOGIN_TAG
    if tag != LOGIN_TAG:
        raise EngineError(f"role {login} exists and is not a restore login of pgfleet")
    verifier = conn.pgconn.encrypt_password(password.encode(), login.encode(), b"scram-sha-256")
    until = (datetime.now(UTC) + LOGIN_VALIDITY).isoformat()
    conn.execute(
        sql.SQL(
            "ALTER ROLE {} WITH LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
            " NOBYPASSRLS PASSWORD {} VALID UNTIL {}"
        ).format(ident, sql.Literal(verifier.decode()), sql.Literal(until))
    )
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), ident))
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident))
    return login, password


def release(conn: psycopg.Connection, logins: Iterable[str]) -> None:
    """Take from the restore logins among `logins` whatever they own or were granted in the
    database of `conn` (the restored one), so they can be dropped."""
    if names := _restore_logins(conn, logins):
        conn.execute(sql.SQL("DROP OWNED BY {}").format(names))


def drop(conn: psycopg.Connection, logins: Iterable[str]) -> None:
    """Drop the restore logins among `logins`, over `conn` (on the maintenance database; the
    restored database `release`d first)."""
    if names := _restore_logins(conn, logins):
        conn.execute(sql.SQL("DROP OWNED BY {}").format(names))  # CONNECT on the database
        conn.execute(sql.SQL("DROP ROLE {}").format(names))


def _restore_logins(conn: psycopg.Connection, logins: Iterable[str]) -> sql.Composable | None:
    mine = [login for login in dict.fromkeys(logins) if _tag(conn, login) == LOGIN_TAG]
    return sql.SQL(", ").join(sql.Identifier(login) for login in mine) if mine else None


def tcp_host(conn: psycopg.Connection) -> str:
    """Where a login reaches the server of `conn`: the first address it listens on (the
    superuser alone may use its private socket)."""
    row = conn.execute("SELECT pg_catalog.current_setting('listen_addresses')").fetchone()
    first = next((a.strip() for a in str(row[0] if row else "").split(",") if a.strip()), "")
    if not first:
        raise EngineError("the server listens on no TCP address: a restore cannot run as the owner's role")
    return {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(first, first)


def _tag(conn: psycopg.Connection, role: str) -> str | None:
    row = conn.execute(
        "SELECT coalesce(pg_catalog.shobj_description(oid, 'pg_authid'), '') FROM pg_catalog.pg_roles"
        " WHERE rolname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
        (role,),
    ).fetchone()
    return None if row is None else str(row[0])
