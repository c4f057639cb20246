"""Native logical replication between two local servers, for blue/green major-version
upgrades: the running server (blue) publishes, a new server at the target version (green)
subscribes, and after a cutover green takes blue's place under the same server id.

Green gets blue's roles (read from pg_authid and written as SQL, with statement logging off
so no password verifier reaches a log) and its schema (`pg_dump --schema-only` of the target
version, without publications or subscriptions, and with the attribute options the target
does not know removed from the text: blue's catalog is never changed). Each database gets a
publication FOR ALL TABLES on blue and a subscription on green that copies the tables, then
streams their changes. Sequences are not replicated: `copy_sequences` sets them at the
cutover, once blue takes no more writes.

The subscriptions connect to blue over its private unix socket as the admin role, the way
read replicas stream: no password exists for them, none is stored in pg_subscription, and
no replication connection crosses TCP.

Objects are named so every call can find what an earlier (perhaps interrupted) one made:
publication and subscription `pgfleet_blue_green` in each database, and on blue one logical
slot per database, `pgfleet_bg_<hash of the database name>`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.postgres import postmaster
from pgfleet.adapters.engines.local.postgres.binaries import bin_dir_for
from pgfleet.adapters.engines.local.postgres.paths import data_dir_version, is_data_dir
from pgfleet.adapters.engines.local.postgres.replication import drop_physical_slot, wal_position
from pgfleet.adapters.engines.local.postgres.upgrade import FOREIGN_ATTRIBUTE_OPTIONS, available_extensions
from pgfleet.adapters.engines.local.sql import ADMIN_USER, SessionLimits, first_line
from pgfleet.core.errors import EngineError
from pgfleet.ports.engine import LogicalReadiness, ServerSpec, SubscriptionProgress

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from pgfleet.adapters.engines.local.cgroups import CgroupLimits
    from pgfleet.adapters.engines.local.postgres.paths import ServerPaths
    from pgfleet.adapters.engines.local.sql import AdminSocket

PUBLICATION = "pgfleet_blue_green"
SUBSCRIPTION = "pgfleet_blue_green"
SLOT_PREFIX = "pgfleet_bg_"
# Written into green's root once its roles and schema are complete: a copy without it was
# interrupted and is made again from scratch.
COPIED_MARKER = "logical-copy.done"
SCHEMA_TIMEOUT_S = 1800
# CREATE SUBSCRIPTION waits on blue for the transactions running when its slot is made.
SUBSCRIBE_LIMITS = SessionLimits(statement_timeout_ms=300_000, lock_timeout_ms=30_000)
# Green runs one apply worker per database, and table-sync workers while it copies.
GREEN_SETTINGS = {"max_logical_replication_workers": "8", "max_worker_processes": "16"}
QUIET = (
    "SET log_min_error_statement = 'panic'",
    "SET log_statement = 'none'",
    "SET log_min_duration_statement = -1",
    "SET pg_stat_statements.track_utility = off",
)
ROLE_FLAGS = (
    ("rolsuper", "SUPERUSER"),
    ("rolinherit", "INHERIT"),
    ("rolcreaterole", "CREATEROLE"),
    ("rolcreatedb", "CREATEDB"),
    ("rolcanlogin", "LOGIN"),
    ("rolreplication", "REPLICATION"),
    ("rolbypassrls", "BYPASSRLS"),
)
# Ordinary tables of the users' schemas: logged ones without a key (neither a primary key nor a
# replica identity: updates and deletes could not be replicated), and unlogged ones.
TABLES_WITHOUT_KEY = (
    "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
    " WHERE c.relkind OPERATOR(pg_catalog.=) 'r' AND c.relpersistence OPERATOR(pg_catalog.=) 'p'"
    " AND n.nspname OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog', 'information_schema'])"
    " AND n.nspname OPERATOR(pg_catalog.!~) '^pg_(toast|temp)'"
    " AND (c.relreplident OPERATOR(pg_catalog.=) 'n' OR (c.relreplident OPERATOR(pg_catalog.=) 'd'"
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i"
    " WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisprimary)))"
    " ORDER BY 1"
)
UNLOGGED_TABLES = (
    "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
    " WHERE c.relkind OPERATOR(pg_catalog.=) 'r' AND c.relpersistence OPERATOR(pg_catalog.=) 'u'"
    " AND n.nspname OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog', 'information_schema'])"
    " ORDER BY 1"
)
# Every column of the users' tables: compared between blue and green at the cutover, so a table
# or column made on blue during the upgrade (DDL is not replicated) is found, not lost.
COLUMNS = (
    "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), a.attname::pg_catalog.text,"
    " pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a"
    " JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
    " WHERE c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog.\"char\"[])"
    " AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped"
    " AND n.nspname OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog', 'information_schema'])"
    " AND n.nspname OPERATOR(pg_catalog.!~) '^pg_(toast|temp)'"
)
# Tables some session holds (or waits for) an ACCESS EXCLUSIVE lock on: DDL in flight.
LOCKED_TABLES = (
    "SELECT DISTINCT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_locks l"
    " JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) l.relation"
    " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
    " WHERE l.mode OPERATOR(pg_catalog.=) 'AccessExclusiveLock'"
    " AND l.database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database"
    " WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())"
    " AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
    " AND n.nspname OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog', 'information_schema'])"
    " ORDER BY 1"
)
ROLES = (
    "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,"
    " rolbypassrls, rolconnlimit, rolpassword, rolvaliduntil::pg_catalog.text FROM pg_catalog.pg_authid"
    " WHERE rolname OPERATOR(pg_catalog.!~) '^pg_' AND rolname OPERATOR(pg_catalog.<>) %s ORDER BY rolname"
)
_OPTION = re.compile(r"(?:, )?\b(?:" + "|".join(map(re.escape, FOREIGN_ATTRIBUTE_OPTIONS)) + r")=[0-9]+")
_SET_OPTIONS = re.compile(r"^(ALTER TABLE .+ ALTER COLUMN .+ SET \()(.*)(\);)$")


def slot_of(database: str) -> str:
    """The logical slot on blue that feeds the subscription of `database` (slot names are
    lowercase letters, digits and underscores, and unique across the server)."""
    return SLOT_PREFIX + hashlib.sha256(database.encode()).hexdigest()[:16]


def without_foreign_options(schema: str) -> str:
    """pg_dump output without FOREIGN_ATTRIBUTE_OPTIONS (`pg_attver=<n>` that Debian's 15
    stamps on every column and newer versions reject): the option goes from each `ALTER
    TABLE ... ALTER COLUMN ... SET (...)` line, and a line left with no option goes."""
    kept: list[str] = []
    for line in schema.splitlines(keepends=True):
        match = _SET_OPTIONS.match(line.rstrip("\n"))
        if match is None:
            kept.append(line)
            continue
        options = _OPTION.sub("", match[2]).removeprefix(", ")
        if options:
            kept.append(f"{match[1]}{options}{match[3]}\n")
    return "".join(kept)


class LogicalReplication:
    """The Engine port's logical replication methods of LocalPostgresEngine (a mixin: it
    uses the engine's paths, sessions, locks and lifecycle)."""

    if TYPE_CHECKING:  # what it uses of LocalPostgresEngine
        _limits: CgroupLimits

        def paths(self, server_id: str) -> ServerPaths: ...
        def admin_socket(self, server_id: str) -> AdminSocket: ...
        def administer(self, server_id: str, action: str) -> AbstractContextManager[psycopg.Connection]: ...
        def _session(
            self, server_id: str, dbname: str, limits: SessionLimits | None
        ) -> AbstractContextManager[psycopg.Connection]: ...
        def _databases(self, server_id: str) -> list[str]: ...
        def _lock(self, name: str) -> AbstractContextManager[None]: ...
        def provision(self, spec: ServerSpec) -> str: ...
        def start(self, spec: ServerSpec) -> str: ...
        def restart(self, spec: ServerSpec) -> str: ...
        def destroy(self, server_id: str) -> str: ...
        def upgrade_space(self, server_id: str) -> tuple[int, int]: ...

    # -- sessions --

    @contextlib.contextmanager
    def _in(
        self,
        server_id: str,
        dbname: str,
        action: str,
        limits: SessionLimits | None = None,
    ) -> Iterator[psycopg.Connection]:
        """A privileged session in `dbname` (search_path pinned, timeouts), SQL errors as
        EngineError saying which `action` failed."""
        with self._session(server_id, dbname, limits=limits or SessionLimits()) as conn:
            try:
                yield conn
            except psycopg.Error as exc:
                raise EngineError(
                    f"{action} on {server_id} (database {dbname}) failed: {first_line(exc)}"
                ) from exc

    def _user_databases(self, server_id: str) -> list[str]:
        """The databases whose tables are replicated: every one that allows connections,
        but template1."""
        return [d for d in self._databases(server_id) if d != "template1"]

    # -- port: pre-flight --

    def logical_readiness(self, server_id: str, target_version: str) -> LogicalReadiness:
        """What a blue/green upgrade of the running server to `target_version` needs, as
        blue shows it now. Changes nothing."""
        available = available_extensions(bin_dir_for(target_version))
        no_key: list[str] = []
        unlogged: list[str] = []
        large_objects: list[str] = []
        missing: list[str] = []
        ddl: list[str] = []
        databases = self._user_databases(server_id)
        for dbname in databases:
            with self._in(server_id, dbname, "checking logical replication prerequisites") as conn:
                rows = conn.execute(TABLES_WITHOUT_KEY).fetchall()
                no_key += [f"{dbname}: {r[0]}" for r in rows]
                rows = conn.execute(UNLOGGED_TABLES).fetchall()
                unlogged += [f"{dbname}: {r[0]}" for r in rows]
                row = conn.execute(
                    "SELECT pg_catalog.count(*) FROM pg_catalog.pg_largeobject_metadata"
                ).fetchone()
                if row and int(row[0]):
                    large_objects.append(f"{dbname}: {int(row[0])}")
                rows = conn.execute("SELECT extname FROM pg_catalog.pg_extension ORDER BY extname").fetchall()
                missing += [f"{dbname}: {r[0]}" for r in rows if str(r[0]) not in available]
                ddl += [f"{dbname}: {r[0]}" for r in conn.execute(LOCKED_TABLES).fetchall()]
        with self.administer(server_id, "checking logical replication settings") as conn:
            settings: dict[str, str] = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_catalog.pg_settings WHERE name OPERATOR(pg_catalog.=)"
                    " ANY (ARRAY['wal_level', 'max_replication_slots', 'max_wal_senders'])"
                ).fetchall()
            )
            row = conn.execute(
                "SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots"
                "        WHERE slot_name OPERATOR(pg_catalog.!~) %s),"
                " (SELECT pg_catalog.count(*) FROM pg_catalog.pg_prepared_xacts)",
                (f"^{SLOT_PREFIX}",),
            ).fetchone()
        used_slots, prepared = (int(row[0]), int(row[1])) if row else (0, 0)
        data, free = self.upgrade_space(server_id)
        return LogicalReadiness(
            wal_level=str(settings.get("wal_level", "")),
            databases=databases,
            tables_without_key=no_key,
            unlogged_tables=unlogged,
            large_objects=large_objects,
            missing_extensions=missing,
            ddl_in_flight=ddl,
            free_slots=int(settings.get("max_replication_slots", 0)) - used_slots,
            free_wal_senders=int(settings.get("max_wal_senders", 0)) - used_slots,
            prepared_transactions=prepared,
            data_bytes=data,
            free_bytes=free,
        )

    # -- port: the copy --

    def enable_logical_decoding(self, spec: ServerSpec) -> str:
        """wal_level=logical on the running server (ALTER SYSTEM, then a restart, only when
        it is not logical already)."""
        with self.administer(spec.server_id, "reading wal_level") as conn:
            row = conn.execute("SELECT pg_catalog.current_setting('wal_level')").fetchone()
            if row and row[0] == "logical":
                return "wal_level is logical already"
            conn.execute("ALTER SYSTEM SET wal_level = logical")
        started = time.monotonic()
        self.restart(spec)
        return f"wal_level set to logical; restarted in {time.monotonic() - started:.1f}s"

    def provision_logical_copy(self, spec: ServerSpec, source_server_id: str) -> str:
        """Make and start the server `spec` (empty, from the template of its version) with
        the running source's roles, databases and schema, no rows. Idempotent: a complete
        copy is only started; an interrupted one is destroyed and made again."""
        paths = self.paths(spec.server_id)
        if not postmaster.running_pid(self.paths(source_server_id)):
            raise EngineError(f"source server {source_server_id} is not running")
        own = dataclasses.replace(spec, settings={**GREEN_SETTINGS, **spec.settings})
        if (paths.root / COPIED_MARKER).exists() and is_data_dir(paths.data):
            return f"already copied; {self.start(own)}"
        self.destroy(spec.server_id)
        started = time.monotonic()
        self.provision(own)
        self.start(own)
        roles = self._copy_roles(spec.server_id, source_server_id)
        databases = self._copy_schema(spec.server_id, source_server_id, spec.version)
        settings = self._copy_role_settings(spec.server_id, source_server_id)
        process.write_owned_file(paths.root / COPIED_MARKER, "")
        return (
            f"PostgreSQL {spec.version} server {spec.server_id} made with {roles} role(s), {settings} role "
            f"setting(s) and the schema of {len(databases)} database(s) ({', '.join(databases)}) in "
            f"{time.monotonic() - started:.1f}s"
        )

    def _copy_roles(self, server_id: str, source_server_id: str) -> int:
        """Every role of the source but the admin and the predefined ones, with its attributes,
        password verifier and memberships."""
        with self.administer(source_server_id, "reading roles") as conn:
            roles = conn.execute(ROLES, (ADMIN_USER,)).fetchall()
            members = conn.execute(
                "SELECT r.rolname, m.rolname, a.admin_option FROM pg_catalog.pg_auth_members a"
                " JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.roleid"
                " JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) a.member"
                " WHERE m.rolname OPERATOR(pg_catalog.<>) %s ORDER BY 1, 2",
                (ADMIN_USER,),
            ).fetchall()
        with self.administer(server_id, "copying roles") as conn:
            for statement in QUIET:
                conn.execute(statement)
            for row in roles:
                name, flags = str(row[0]), row[1 : 1 + len(ROLE_FLAGS)]
                limit, password, valid_until = row[1 + len(ROLE_FLAGS) :]
                exists = conn.execute(
                    "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) %s", (name,)
                ).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))
                words = [word if on else f"NO{word}" for on, (_, word) in zip(flags, ROLE_FLAGS, strict=True)]
                parts = [
                    sql.SQL(" ".join(words)),
                    sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(int(limit))),
                ]
                if password is not None:
                    parts.append(sql.SQL("PASSWORD {}").format(sql.Literal(str(password))))
                if valid_until is not None:
                    parts.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(str(valid_until))))
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH {}").format(sql.Identifier(name), sql.SQL(" ").join(parts))
                )
            for role, member, admin in members:
                grant = sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(str(role)), sql.Identifier(str(member))
                )
                conn.execute(grant + sql.SQL(" WITH ADMIN OPTION") if admin else grant)
        return len(roles)

    def _copy_role_settings(self, server_id: str, source_server_id: str) -> int:
        """ALTER ROLE ... [IN DATABASE ...] SET of the source (after the databases exist)."""
        with self.administer(source_server_id, "reading role settings") as conn:
            rows = conn.execute(
                "SELECT r.rolname, d.datname, s.setconfig FROM pg_catalog.pg_db_role_setting s"
                " JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.setrole"
                " LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.setdatabase"
                " WHERE r.rolname OPERATOR(pg_catalog.<>) %s",
                (ADMIN_USER,),
            ).fetchall()
        count = 0
        with self.administer(server_id, "copying role settings") as conn:
            for role, database, config in rows:
                where = (
                    sql.SQL(" IN DATABASE {}").format(sql.Identifier(database)) if database else sql.SQL("")
                )
                for item in config or []:
                    name, _, value = str(item).partition("=")
                    conn.execute(
                        sql.SQL("ALTER ROLE {}{} SET {} TO {}").format(
                            sql.Identifier(str(role)), where, sql.Identifier(name), sql.Literal(value)
                        )
                    )
                    count += 1
        return count

    def _copy_schema(self, server_id: str, source_server_id: str, version: str) -> list[str]:
        """pg_dump --schema-only of every database of the source (the target version's
        pg_dump), filtered, run into the server with psql (stopping at the first error)."""
        bin_dir = bin_dir_for(version)
        source = self.admin_socket(source_server_id)
        target = self.admin_socket(server_id)
        script = self.paths(server_id).root / "schema.sql"
        databases = self._user_databases(source_server_id)
        for dbname in databases:
            argv = [
                str(bin_dir / "pg_dump"), "--schema-only", "--no-publications", "--no-subscriptions",
                "--no-statistics", "-h", str(source.socket), "-p", str(source.port), "-U", ADMIN_USER,
                "-d", dbname,
            ]  # fmt: skip
            if dbname != "postgres":  # green's own maintenance database exists already
                argv.append("--create")
            schema = process.run(argv, timeout=SCHEMA_TIMEOUT_S).stdout
            process.write_owned_file(script, without_foreign_options(schema))
            try:
                process.run(
                    [str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(target.socket),
                     "-p", str(target.port), "-U", ADMIN_USER, "-d", "postgres", "-f", str(script)],
                    timeout=SCHEMA_TIMEOUT_S,
                )  # fmt: skip
            finally:
                script.unlink(missing_ok=True)
        return databases

    # -- port: replication --

    def subscribe(self, server_id: str, source_server_id: str) -> str:
        """A publication FOR ALL TABLES in each database of the source, and the server's
        subscription to it (copying the tables, then streaming). Idempotent."""
        source = self.admin_socket(source_server_id)
        made: list[str] = []
        for dbname in self._user_databases(source_server_id):
            slot = slot_of(dbname)
            with self._in(source_server_id, dbname, "creating the publication") as conn:
                if not conn.execute(
                    "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname OPERATOR(pg_catalog.=) %s",
                    (PUBLICATION,),
                ).fetchone():
                    conn.execute(
                        sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(sql.Identifier(PUBLICATION))
                    )
            with self._in(server_id, dbname, "creating the subscription", SUBSCRIBE_LIMITS) as conn:
                if conn.execute(
                    "SELECT 1 FROM pg_catalog.pg_subscription WHERE subname OPERATOR(pg_catalog.=) %s"
                    " AND subdbid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database"
                    " WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())",
                    (SUBSCRIPTION,),
                ).fetchone():
                    continue
                # A slot left by a CREATE SUBSCRIPTION interrupted after it made the slot.
                with self.administer(source_server_id, "dropping a stale slot") as source_conn:
                    drop_physical_slot(source_conn, slot)
                conninfo = make_conninfo(
                    host=str(source.socket), port=str(source.port), user=ADMIN_USER, dbname=dbname,
                    application_name=slot,
                )  # fmt: skip
                conn.execute(
                    sql.SQL(
                        "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {}"
                        " WITH (slot_name = {}, copy_data = true, streaming = off)"
                    ).format(
                        sql.Identifier(SUBSCRIPTION), sql.Literal(conninfo), sql.Identifier(PUBLICATION),
                        sql.Literal(slot),
                    )
                )  # fmt: skip
                made.append(dbname)
        return f"subscribed to {len(made)} database(s)" + (f": {', '.join(made)}" if made else " (all were)")

    def subscription_progress(self, server_id: str, source_server_id: str) -> SubscriptionProgress:
        """Tables copied, apply errors (seen on the server), and how far its subscriptions
        confirmed the source's WAL (seen on the source)."""
        total = ready = 0
        errors: list[str] = []
        databases = self._user_databases(source_server_id)
        for dbname in databases:
            with self._in(server_id, dbname, "reading the subscription") as conn:
                row = conn.execute(
                    "SELECT pg_catalog.count(DISTINCT s.oid), pg_catalog.count(r.srrelid),"
                    " pg_catalog.count(r.srrelid) FILTER (WHERE r.srsubstate OPERATOR(pg_catalog.=) 'r'),"
                    " pg_catalog.max(st.apply_error_count OPERATOR(pg_catalog.+) st.sync_error_count)"
                    " FROM pg_catalog.pg_subscription s"
                    " LEFT JOIN pg_catalog.pg_subscription_rel r ON r.srsubid OPERATOR(pg_catalog.=) s.oid"
                    " LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid OPERATOR(pg_catalog.=) s.oid"
                    " WHERE s.subname OPERATOR(pg_catalog.=) %s AND s.subdbid OPERATOR(pg_catalog.=)"
                    " (SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=)"
                    " pg_catalog.current_database())",
                    (SUBSCRIPTION,),
                ).fetchone()  # fmt: skip
            if row is None or not row[0]:
                errors.append(f"database {dbname}: no subscription")
                continue
            total += int(row[1])
            ready += int(row[2])
            if row[3]:
                errors.append(
                    f"database {dbname}: {int(row[3])} apply or sync error(s) (see the server's log)"
                )
        slots = [slot_of(d) for d in databases]
        with self.administer(source_server_id, "reading the subscribers' positions") as conn:
            rows = conn.execute(
                "SELECT s.slot_name, pg_catalog.pg_wal_lsn_diff(r.flush_lsn, '0/0')::pg_catalog.int8 FROM pg_catalog.pg_replication_slots s LEFT JOIN pg_catalog.pg_stat_replication r"
                " ON r.pid OPERATOR(pg_catalog.=) s.active_pid WHERE s.slot_name OPERATOR(pg_catalog.=) ANY (%s)",
                (slots,),
            ).fetchall()
            current = wal_position(conn)
        confirmed = {str(r[0]): None if r[1] is None else int(r[1]) for r in rows}
        positions = [confirmed.get(s) for s in slots]
        lowest = None if any(p is None for p in positions) else min(p for p in positions if p is not None)
        return SubscriptionProgress(
            tables_total=total,
            tables_ready=ready,
            confirmed_position=lowest,
            lag_bytes=None if lowest is None else max(0, current - lowest),
            errors=errors,
        )

    def checkpoint(self, server_id: str) -> str:
        """A CHECKPOINT now, so the next shutdown of the server has little left to write."""
        started = time.monotonic()
        with self.administer(server_id, "checkpoint") as conn:
            conn.execute("SET statement_timeout = 0")
            conn.execute("CHECKPOINT")
        return f"checkpoint of {server_id} in {time.monotonic() - started:.1f}s"

    def copy_sequences(self, server_id: str, source_server_id: str) -> str:
        """Every sequence of the source that was used, set to the same value on the server
        (meant for a source that takes no more writes). Idempotent."""
        count = 0
        for dbname in self._user_databases(source_server_id):
            with self._in(source_server_id, dbname, "reading sequences") as conn:
                rows = conn.execute(
                    "SELECT pg_catalog.format('%I.%I', schemaname, sequencename), last_value"
                    " FROM pg_catalog.pg_sequences WHERE last_value IS NOT NULL"
                ).fetchall()
            if not rows:
                continue
            with self._in(server_id, dbname, "setting sequences") as conn:
                for name, value in rows:
                    conn.execute(
                        "SELECT pg_catalog.setval(%s::pg_catalog.regclass, %s::pg_catalog.int8, true)",
                        (name, int(value)),
                    )
                    count += 1
        return f"{count} sequence(s) set to the source's values"

    def schema_differences(self, server_id: str, source_server_id: str) -> list[str]:
        """The tables and columns (with their types) of the source that the server lacks or
        has otherwise, and the other way round, one line each ("db: only on <id>: ...")."""
        differences: list[str] = []
        for dbname in self._user_databases(source_server_id):
            sides = []
            for sid in (source_server_id, server_id):
                with self._in(sid, dbname, "reading the columns") as conn:
                    sides.append({(str(t), str(c), str(ty)) for t, c, ty in conn.execute(COLUMNS).fetchall()})
            for sid, only in ((source_server_id, sides[0] - sides[1]), (server_id, sides[1] - sides[0])):
                differences += [f"{dbname}: only on {sid}: {t}.{c} {ty}" for t, c, ty in sorted(only)]
        return differences

    def unsubscribe(self, server_id: str, source_server_id: str) -> str:
        """Drop the server's subscriptions (when it runs), then the source's slots and
        publications (when it runs: writes refused or not, this session may write).
        Idempotent."""
        notes: list[str] = []
        source_paths = self.paths(source_server_id)
        databases = self._user_databases(source_server_id) if postmaster.running_pid(source_paths) else None
        if is_data_dir(self.paths(server_id).data) and postmaster.running_pid(self.paths(server_id)):
            dropped = 0
            for dbname in self._user_databases(server_id):
                with self._in(server_id, dbname, "dropping the subscription") as conn:
                    if not conn.execute(
                        "SELECT 1 FROM pg_catalog.pg_subscription WHERE subname OPERATOR(pg_catalog.=) %s"
                        " AND subdbid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database"
                        " WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())",
                        (SUBSCRIPTION,),
                    ).fetchone():
                        continue
                    name = sql.Identifier(SUBSCRIPTION)
                    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(name))
                    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(name))
                    conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(name))
                    dropped += 1
            notes.append(f"dropped {dropped} subscription(s) on {server_id}")
        if databases is not None:
            for dbname in databases:
                with self._in(source_server_id, dbname, "dropping the publication") as conn:
                    conn.execute("SET default_transaction_read_only = off")
                    drop_physical_slot(conn, slot_of(dbname))
                    conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(PUBLICATION)))
            notes.append(f"dropped the slots and publications on {source_server_id}")
        return "; ".join(notes) or "nothing to drop (neither server runs)"

    # -- port: identity --

    def rename_server(self, server_id: str, new_server_id: str) -> str:
        """Give the stopped server `server_id` the id `new_server_id`: its directory moves,
        and the paths in its configuration follow. Idempotent: a server already renamed is
        not an error."""
        old, new = self.paths(server_id), self.paths(new_server_id)
        with self._lock(f"server-{server_id}"), self._lock(f"server-{new_server_id}"):
            if not old.root.exists():
                if is_data_dir(new.data):
                    return f"{server_id} is {new_server_id} already"
                raise EngineError(f"server {server_id} does not exist")
            if new.root.exists():
                raise EngineError(f"cannot rename {server_id}: {new_server_id} exists")
            if postmaster.running_pid(old):
                raise EngineError(f"server {server_id} must be stopped to be renamed")
            self._limits.release(server_id)
            os.rename(old.root, new.root)
            _follow_paths(new.config, old.root, new.root)
        return f"server {server_id} renamed {new_server_id}"

    def server_major_version(self, server_id: str) -> str | None:
        """The major version in the server's data directory; None when it has none."""
        paths = self.paths(server_id)
        return data_dir_version(paths.data) if is_data_dir(paths.data) else None


def _follow_paths(config: Path, old_root: Path, new_root: Path) -> None:
    """Rewrite the quoted paths below `old_root` in pgfleet.conf (the socket and log
    directories) to lie below `new_root`."""
    try:
        text = config.read_text()
    except FileNotFoundError:
        return
    process.write_owned_file(config, text.replace(f"'{old_root}/", f"'{new_root}/"))
