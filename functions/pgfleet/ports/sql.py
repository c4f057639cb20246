"""The SQL seam: statements run as the platform's admin role inside a managed server.

Every SQL statement the control plane runs inside a server it manages goes through a
SqlTarget. A session is privileged, so it is pinned down before the first statement:

- `search_path` is `pg_catalog, pg_temp`: no object a tenant creates can stand in for a
  catalog relation or function (and the SQL sent is schema-qualified all the same);
- `lock_timeout` and `statement_timeout` are set, so a platform statement never queues for
  long behind a tenant's lock, and never runs unbounded.

Domains keep their SQL text in their own `sql.py`, with every relation and function
schema-qualified (`pg_catalog.pg_stat_activity`, `pg_catalog.current_setting(...)`), and
identifiers composed with `psycopg.sql`, never formatted into the text.
Customer-supplied SQL never runs in a privileged session: it runs as the database's app role
in a `customer_session`, one transaction that is always rolled back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from pgfleet.core.errors import EngineError

if TYPE_CHECKING:
    from typing import LiteralString, TypeAlias

    from psycopg.abc import Params
    from psycopg.sql import SQL, Composed

    # Constant text, or text composed with psycopg.sql (identifiers quoted, never formatted).
    Query: TypeAlias = LiteralString | SQL | Composed

DEFAULT_STATEMENT_TIMEOUT_MS = 30_000
DEFAULT_LOCK_TIMEOUT_MS = 5_000
DEFAULT_CUSTOMER_STATEMENT_TIMEOUT_MS = 5_000
PINNED_SEARCH_PATH = "pg_catalog, pg_temp"


class StatementCancelled(EngineError):
    """The server cancelled a statement: it ran past the session's statement_timeout or
    waited past its lock_timeout. The message says which, and how long the limit was."""


class SqlSession(ABC):
    """One privileged session on one server, in autocommit mode: each statement commits on
    its own (a statement such as CREATE DATABASE cannot run in a transaction block).

    Every method raises StatementCancelled when the statement hits a timeout, and
    EngineError for any other error the server reports (the first line of its message,
    with the server named). The session stays usable after a failed statement.
    """

    @abstractmethod
    def execute(self, query: Query, params: Params | None = None) -> None:
        """Run one statement, discarding any rows it returns."""

    @abstractmethod
    def fetch_all(self, query: Query, params: Params | None = None) -> list[tuple[Any, ...]]:
        """Run one statement and return all its rows ([] for a statement without rows)."""

    @abstractmethod
    def fetch_one(self, query: Query, params: Params | None = None) -> tuple[Any, ...] | None:
        """Run one statement and return its first row, None when it returned none."""

    @property
    def rowcount(self) -> int:
        """How many rows the last statement wrote or returned, as the server reported it; -1
        when it did not say (a utility statement such as VACUUM)."""
        return -1


class SqlTarget(ABC):
    """Opens privileged sessions on the servers the platform manages."""

    @abstractmethod
    def session(
        self,
        server_id: str,
        *,
        database: str | None = None,
        node: str | None = None,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
        lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
    ) -> AbstractContextManager[SqlSession]:
        """A session as the platform's admin role on `server_id`, in `database` (the
        maintenance database when None), closed when the block ends.

        `server_id` is an instance or a replica (`node` must then be None), or a cluster: its
        current primary, or the member named `node`. The session's search_path is
        `pg_catalog, pg_temp`, and its lock_timeout and statement_timeout are the values
        given (milliseconds, at least 1: a session without limits cannot be asked for).

        Raises NotFound for an unknown server, cluster or node; InvalidState when the server
        (or, for a cluster, any primary) is not running; EngineError when it cannot be
        reached or `database` does not exist; ValueError for a timeout below 1 ms. Blocks
        for a few seconds at most while connecting.
        """

    @abstractmethod
    def customer_session(
        self,
        server_id: str,
        uri: str,
        *,
        statement_timeout_ms: int = DEFAULT_CUSTOMER_STATEMENT_TIMEOUT_MS,
        lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
        commit: bool = False,
    ) -> AbstractContextManager[SqlSession]:
        """A session as a customer's own role, for SQL a customer supplies (EXPLAIN of its
        statement, a maintenance task's `taskSQL`), never as the platform's admin role.

        `uri` is a libpq URI naming the role and its password (servers.connection_uri); the
        session connects as a client would. It is ONE transaction: before the block's first
        statement `statement_timeout` and `lock_timeout` are set LOCAL to the values given
        (milliseconds, at least 1), and when the block ends, however it ends, the transaction is
        ROLLED BACK: nothing a statement of the session wrote survives it. With `commit=True`
        (a maintenance task's own SQL) a block that ends without an exception COMMITS instead;
        one that raises is rolled back all the same. search_path is the
        role's own (customer SQL names its own objects). Parameters are bound by the server as
        `$1..$n` placeholders, as PostgreSQL writes them; `%` in the text is not special.

        Raises InvalidState when the role is a superuser (nothing else runs); EngineError when
        it cannot connect (the message names the server, never the password); a statement
        raises as SqlSession says (StatementCancelled for the timeouts), after which the
        transaction is aborted: open a new session for another statement.
        """
