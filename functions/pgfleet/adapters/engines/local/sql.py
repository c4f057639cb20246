"""The SQL seam for local servers: one way to open a session as the platform's admin role.

A local server (a single instance, a read replica, a Patroni node, a scratch server of the
restore host) is administered over its private unix socket as the `postgres` superuser
(trust: the socket directory is 0700). `connect` is the only place such a connection is
opened; the engines, the database admin and the restore host all call it. Unless asked for a
raw connection, it pins the session at startup (`options`, so not even the first statement
runs without them): search_path `pg_catalog, pg_temp`, lock_timeout and statement_timeout.

`LocalSqlTarget` is the SqlTarget port on top of it: it resolves an instance, a replica, or a
cluster's primary or named node to its socket and port.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors

from pgfleet.core import request_context
from pgfleet.core.errors import EngineError, InvalidState, NotFound
from pgfleet.ports.sql import (
    DEFAULT_CUSTOMER_STATEMENT_TIMEOUT_MS,
    DEFAULT_LOCK_TIMEOUT_MS,
    DEFAULT_STATEMENT_TIMEOUT_MS,
    SqlSession,
    SqlTarget,
    StatementCancelled,
)

if TYPE_CHECKING:
    from psycopg.abc import Params

    from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
    from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
    from pgfleet.ports.sql import Query

ADMIN_USER = "postgres"
MAINTENANCE_DATABASE = "postgres"
CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class AdminSocket:
    """Where the platform's admin role reaches one local server: the directory of its
    private unix socket, and its port."""

    socket: Path
    port: int
    user: str = ADMIN_USER


@dataclass(frozen=True)
class SessionLimits:
    """What a privileged session is pinned to, besides its search_path."""

    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS

    def __post_init__(self) -> None:
        if self.statement_timeout_ms < 1 or self.lock_timeout_ms < 1:
            raise ValueError("statement_timeout_ms and lock_timeout_ms must be at least 1")

    @property
    def options(self) -> str:
        """The libpq `options` that set them at session start (the values are integers and
        a fixed path: nothing here comes from outside; a backslash escapes the space)."""
        return (
            "-c search_path=pg_catalog,\\ pg_temp"
            f" -c lock_timeout={int(self.lock_timeout_ms)}"
            f" -c statement_timeout={int(self.statement_timeout_ms)}"
        )


def connect(
    address: AdminSocket,
    database: str = MAINTENANCE_DATABASE,
    *,
    limits: SessionLimits | None = SessionLimits(),  # noqa: B008 (frozen, so shared safely)
    connect_timeout: int = CONNECT_TIMEOUT_S,
    application_name: str = "pgfleet",
) -> psycopg.Connection:
    """An autocommit connection as the admin role over the server's private socket.

    With `limits` (the default) the session is pinned as the module docstring says;
    `limits=None` gives a raw superuser session, for tools and tests that create objects of
    their own. Raises psycopg.Error (callers say which server could not be reached).
    """
    params: dict[str, Any] = {
        "host": str(address.socket),
        "port": address.port,
        "user": address.user,
        "dbname": database,
        "connect_timeout": connect_timeout,
        "application_name": application_name,
    }
    if limits is not None:
        params["options"] = limits.options
    return psycopg.connect(autocommit=True, **params)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class LocalSqlSession(SqlSession):
    """A SqlSession on one psycopg connection; `label` names the server in errors."""

    def __init__(self, conn: psycopg.Connection, label: str, limits: SessionLimits) -> None:
        self._conn = conn
        self._label = label
        self._limits = limits
        self._rowcount = -1

    @property
    def rowcount(self) -> int:
        return self._rowcount

    def execute(self, query: Query, params: Params | None = None) -> None:
        self._run(query, params)

    def fetch_all(self, query: Query, params: Params | None = None) -> list[tuple[Any, ...]]:
        cur = self._run(query, params)
        return cur.fetchall() if cur.description else []

    def fetch_one(self, query: Query, params: Params | None = None) -> tuple[Any, ...] | None:
        cur = self._run(query, params)
        return cur.fetchone() if cur.description else None

    def _run(self, query: Query, params: Params | None) -> psycopg.Cursor[tuple[Any, ...]]:
        started = time.perf_counter()
        try:
            cur = self._conn.execute(query, params)
            self._rowcount = cur.rowcount
            return cur
        except pg_errors.LockNotAvailable as exc:
            raise StatementCancelled(
                f"statement on {self._label} cancelled: it waited for a lock longer than the"
                f" lock_timeout of {self._limits.lock_timeout_ms} ms ({first_line(exc)})"
            ) from exc
        except pg_errors.QueryCanceled as exc:
            raise StatementCancelled(
                f"statement on {self._label} cancelled: it ran longer than the statement_timeout"
                f" of {self._limits.statement_timeout_ms} ms ({first_line(exc)})"
            ) from exc
        except psycopg.Error as exc:
            raise EngineError(f"statement on {self._label} failed: {first_line(exc)}") from exc
        finally:
            request_context.count_database(time.perf_counter() - started)


class LocalSqlTarget(SqlTarget):
    """Sessions on the single servers (instances, replicas) of `servers` and on the nodes
    of the clusters of `clusters`."""

    def __init__(self, servers: LocalPostgresEngine, clusters: LocalPatroniEngine | None = None) -> None:
        self._servers = servers
        self._clusters = clusters

    @contextlib.contextmanager
    def session(
        self,
        server_id: str,
        *,
        database: str | None = None,
        node: str | None = None,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
        lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
    ) -> Iterator[SqlSession]:
        limits = SessionLimits(statement_timeout_ms, lock_timeout_ms)
        address, label = self.resolve(server_id, node)
        try:
            conn = connect(address, database or MAINTENANCE_DATABASE, limits=limits)
        except psycopg.Error as exc:
            raise EngineError(f"cannot connect to {label}: {first_line(exc)}") from exc
        with conn:
            yield LocalSqlSession(conn, label, limits)

    @contextlib.contextmanager
    def customer_session(
        self,
        server_id: str,
        uri: str,
        *,
        statement_timeout_ms: int = DEFAULT_CUSTOMER_STATEMENT_TIMEOUT_MS,
        lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
        commit: bool = False,
    ) -> Iterator[SqlSession]:
        limits = SessionLimits(statement_timeout_ms, lock_timeout_ms)
        label = f"server {server_id}"
        try:  # over TCP with the role's password, as its clients connect; $n placeholders (RawCursor)
            conn = psycopg.connect(
                uri, autocommit=False, connect_timeout=CONNECT_TIMEOUT_S, application_name="pgfleet-explain",
                cursor_factory=psycopg.RawCursor,
            )  # fmt: skip
        except psycopg.Error as exc:
            raise EngineError(f"cannot connect to {label} as the database's role: {first_line(exc)}") from exc
        try:  # never `with conn`: it would commit
            session = LocalSqlSession(conn, label, limits)
            row = session.fetch_one(
                "SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER"
            )
            if row is None or row[0]:
                raise InvalidState(f"{label}: customer SQL never runs as a superuser role")
            session.execute(
                "SELECT pg_catalog.set_config('statement_timeout', $1, true), pg_catalog.set_config('lock_timeout', $2, true)",
                (str(limits.statement_timeout_ms), str(limits.lock_timeout_ms)),
            )
            yield session
            if commit:
                try:
                    conn.commit()
                except psycopg.Error as exc:
                    raise EngineError(f"statement on {label} failed at commit: {first_line(exc)}") from exc
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            conn.close()

    def resolve(self, server_id: str, node: str | None = None) -> tuple[AdminSocket, str]:
        """The socket of `server_id` (and `node`), and how errors name it. Raises as
        `session` says."""
        servers = self._servers
        try:
            provisioned = servers.is_provisioned(server_id)
        except EngineError as exc:  # not even a valid id
            raise NotFound(f"server {server_id} not found") from exc
        if provisioned:
            if node is not None:
                raise NotFound(f"server {server_id} is not a cluster: it has no node {node}")
            if not servers.is_running(server_id):
                raise InvalidState(f"server {server_id} is not running")
            return servers.admin_socket(server_id), f"server {server_id}"
        clusters = self._clusters
        nodes = clusters.node_ids(server_id) if clusters is not None else []
        if clusters is None or not nodes:
            raise NotFound(f"server {server_id} not found")
        if node is None:
            primary = next(
                (m for m in clusters.members(server_id) if m.role == "primary" and m.running), None
            )
            if primary is None:
                raise InvalidState(f"cluster {server_id} has no running primary")
            node = primary.node_id
        elif node not in nodes:
            raise NotFound(f"cluster {server_id} has no node {node}")
        return clusters.admin_socket(server_id, node), f"node {node} of cluster {server_id}"
