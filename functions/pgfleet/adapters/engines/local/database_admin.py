"""DatabaseAdmin for servers reached over a private unix socket as the superuser (the local
single-server engine and the primary of a local Patroni cluster).

The privilege model is described in `pgfleet.ports.database_admin`. Everything that belongs
to a tenant carries the comment `pgfleet:tenant:<tenant_id>`, which is how an existing role,
database or schema is recognised as the tenant's own (and anything else of that name is left
alone and reported as taken).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import LiteralString

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from pgfleet.adapters.engines.local import large_objects, logical_dump, process
from pgfleet.adapters.engines.local.sql import ADMIN_USER, AdminSocket, SessionLimits, connect, first_line
from pgfleet.core.errors import AlreadyExists, EngineError
from pgfleet.ports.database_admin import (
    DATABASE_PER_TENANT,
    DatabaseAdmin,
    LogicalDump,
    ServerUsage,
    TenantSpec,
    TenantUsage,
)

# DDL on a tenant's objects waits at most 10 s for a lock held by the tenant's sessions; a
# statement (catalog work, mostly) runs at most 5 minutes, a VACUUM as long as a dump may.
ADMIN_LIMITS = SessionLimits(statement_timeout_ms=300_000, lock_timeout_ms=10_000)
DUMP_TIMEOUT_S = 3600
VACUUM_LIMITS = SessionLimits(statement_timeout_ms=DUMP_TIMEOUT_S * 1000, lock_timeout_ms=10_000)
TAG_PREFIX = "pgfleet:tenant:"
FROZEN_TAG = "pgfleet:frozen-owner"
# Databases every role may connect to right after initdb: closed to PUBLIC once tenants exist.
SHARED_DATABASES = ("postgres", "template1")
# Statements that keep a password verifier out of the server log and pg_stat_statements.
QUIET_SESSION = (
    "SET log_min_error_statement = 'panic'",
    "SET log_statement = 'none'",
    "SET log_min_duration_statement = -1",
    "SET pg_stat_statements.track_utility = off",
)
# Relations a reader of a suspended tenant may DELETE from and TRUNCATE: plain tables without
# rewrite rules, user triggers, inheritance children, or foreign keys pointing at them that
# would update or delete elsewhere (each of those could run a write as another role).
SAFE_TO_EMPTY = """
SELECT c.oid::pg_catalog.regclass::pg_catalog.text, n.nspname, c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relnamespace OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.oid[]) AND c.relkind = 'r'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid AND r.ev_type <> '1')
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                  WHERE k.confrelid = c.oid AND k.contype = 'f' AND k.confdeltype NOT IN ('a', 'r'))
"""


# Revokes EXECUTE on the SECURITY DEFINER routines of one owner in some schemas from everyone
# but the owner. Routines can only be named by their signature, which the server renders and
# quotes itself (regprocedure); the owner and schemas come in as settings, never as SQL text.
REVOKE_DEFINER_ROUTINES = """
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid::pg_catalog.regprocedure AS routine,
               array(SELECT DISTINCT a.grantee FROM pg_catalog.aclexplode(p.proacl) a WHERE a.grantee <> p.proowner) AS grantees
        FROM pg_catalog.pg_proc p
        WHERE p.prosecdef
          AND p.proowner OPERATOR(pg_catalog.=) pg_catalog.current_setting('pgfleet.owner')::pg_catalog.regrole::pg_catalog.oid
          AND p.pronamespace OPERATOR(pg_catalog.=) ANY(pg_catalog.current_setting('pgfleet.schemas')::pg_catalog.oid[])
    LOOP
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', r.routine);
        FOR i IN 1 .. coalesce(pg_catalog.array_length(r.grantees, 1), 0) LOOP
            IF r.grantees[i] OPERATOR(pg_catalog.<>) 0::pg_catalog.oid THEN
                EXECUTE pg_catalog.format('REVOKE EXECUTE ON ROUTINE %s FROM %I', r.routine,
                                          r.grantees[i]::pg_catalog.regrole::pg_catalog.text);
            END IF;
        END LOOP;
    END LOOP;
END
$$
"""


def tag(tenant: TenantSpec) -> str:
    return TAG_PREFIX + tenant.name


def frozen_owner(role: str) -> str:
    """The NOLOGIN role that holds an application role's objects while its writes are
    suspended (a hash keeps the name within 63 bytes whatever the role's name)."""
    return "pgfleet_frozen_" + hashlib.sha256(role.encode()).hexdigest()[:16]


def pg_dump_argv(
    bin_dir: Path, socket: Path, port: int, database: str, schema: str | None, target: Path | None = None
) -> list[str]:
    """pg_dump of the tenant's database or schema into `target`, or to stdout without one."""
    # --lock-wait-timeout: a tenant holding an exclusive lock fails the dump instead of hanging it.
    argv = [
        str(bin_dir / "pg_dump"), "-h", str(socket), "-p", str(port), "-U", ADMIN_USER,
        "-w", "--format=custom", "--lock-wait-timeout=30s", "-d", database,
    ]  # fmt: skip
    if target is not None:
        argv += ["-f", str(target)]
    if schema is not None:
        # An exact name: tenant schema names are [a-z0-9_], never pattern characters.
        argv += ["-n", schema]
    return argv


@dataclass(frozen=True)
class AdminServer:
    """Where the admin role reaches one server, and the binaries of its version (for pg_dump)."""

    address: AdminSocket
    bin_dir: Path


class LocalDatabaseAdmin(DatabaseAdmin):
    """Administers the server at `primary`; `others` (a cluster's replicas) only count
    towards connection usage. Dumps go to `dumps_dir` (created owned by the data-plane
    user). `keep_connect` names roles that keep CONNECT on the `postgres` database once it
    is closed to PUBLIC (Patroni's rewind user needs it)."""

    def __init__(
        self,
        primary: AdminServer,
        dumps_dir: Path,
        others: tuple[AdminSocket, ...] = (),
        keep_connect: tuple[str, ...] = (),
    ) -> None:
        self._primary = primary
        self._others = others
        self._dumps_dir = dumps_dir
        self._keep_connect = keep_connect

    # -- connections --

    @contextlib.contextmanager
    def _connect(
        self,
        dbname: str = "postgres",
        target: AdminSocket | None = None,
        limits: SessionLimits = ADMIN_LIMITS,
    ) -> Iterator[psycopg.Connection]:
        """A privileged session (search_path pg_catalog, pg_temp; `limits`) on `target`, the
        primary by default."""
        try:
            conn = connect(target or self._primary.address, dbname, limits=limits)
        except psycopg.Error as exc:
            raise EngineError(f"cannot connect to database {dbname!r}: {first_line(exc)}") from exc
        with conn:
            try:
                yield conn
            except psycopg.Error as exc:
                raise EngineError(f"on database {dbname!r}: {first_line(exc)}") from exc

    # -- tenants --

    def create_tenant(self, tenant: TenantSpec, password: str) -> str:
        if not password:
            raise EngineError("password must not be empty")
        # Everything that could refuse the tenant is checked before anything is created.
        with self._connect() as conn:
            for role in tenant.roles:
                _require_unclaimed_role(conn, tenant, role)
            if tenant.mode == DATABASE_PER_TENANT:
                _require_unclaimed_database(conn, tenant)
        if tenant.schema is not None:
            with self._connect(tenant.database) as conn:
                _require_unclaimed_schema(conn, tenant)
        done: list[str] = []
        with self._connect() as conn:
            for statement in QUIET_SESSION:
                conn.execute(statement)
            for role in (tenant.owner, tenant.writer, tenant.reader):
                done += _ensure_role(conn, role, tag(tenant), login=False)
            done += _ensure_role(conn, tenant.login, tag(tenant), login=True)
            verifier = conn.pgconn.encrypt_password(
                password.encode(), tenant.login.encode(), b"scram-sha-256"
            )
            login = sql.Identifier(tenant.login)
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(login, sql.Literal(verifier.decode()))
            )
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(tenant.owner), sql.Identifier(tenant.writer))
            )
            conn.execute(
                sql.SQL("GRANT {}, {} TO {}").format(
                    sql.Identifier(tenant.writer), sql.Identifier(tenant.reader), login
                )
            )
            # Sessions act as the owner, so what the tenant creates is the owner's, never the login's.
            conn.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(login, sql.Literal(tenant.owner)))
            if tenant.schema is not None:
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET search_path = {}").format(login, sql.Identifier(tenant.schema))
                )
            self._close_shared_databases(conn)
            if tenant.mode == DATABASE_PER_TENANT:
                done += _ensure_tenant_database(conn, tenant)
        with self._connect(tenant.database) as conn:
            if tenant.mode == DATABASE_PER_TENANT:
                _prepare_tenant_database(conn, tenant)
            else:
                done += _prepare_tenant_schema(conn, tenant)
        done.append(self.set_connection_limit(tenant))
        return "; ".join(d for d in done if d)

    def _close_shared_databases(self, conn: psycopg.Connection) -> None:
        """Tenants may connect to nothing but their own database: close the databases every
        role may connect to after initdb, keeping CONNECT for the platform's roles that need it."""
        for database in SHARED_DATABASES:
            conn.execute(
                sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                    sql.Identifier(database)
                )
            )
        for role in self._keep_connect:
            if _role_tag(conn, role) is not None:
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE postgres TO {}").format(sql.Identifier(role)))

    def set_connection_limit(self, tenant: TenantSpec) -> str:
        limit = sql.Literal(-1 if tenant.max_connections is None else tenant.max_connections)
        with self._connect() as conn:
            _require_tenant_role(conn, tenant, tenant.login)
            conn.execute(
                sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(sql.Identifier(tenant.login), limit)
            )
            if tenant.mode == DATABASE_PER_TENANT:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
                        sql.Identifier(tenant.database), limit
                    )
                )
        shown = "unlimited" if tenant.max_connections is None else str(tenant.max_connections)
        return f"connection limit {shown}"

    def block_logins(self, tenant: TenantSpec) -> str:
        with self._connect() as conn:
            if _role_tag(conn, tenant.login) != tag(tenant):
                return f"role {tenant.login} does not exist"
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(tenant.login)))
            ended = _terminate(conn, tenant.login)
        return f"logins of {tenant.login} blocked, {ended} session(s) ended"

    def drop_tenant(self, tenant: TenantSpec) -> str:
        done = []
        with self._connect() as conn:
            ended = _terminate(conn, tenant.login)
            if tenant.mode == DATABASE_PER_TENANT:
                found = _database_claim(conn, tenant.database)
                if found is not None:
                    if found != (tag(tenant), True):
                        raise EngineError(
                            f"database {tenant.database} does not belong to tenant {tenant.name}"
                        )
                    conn.execute(
                        sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(tenant.database))
                    )
                    done.append(f"dropped database {tenant.database}")
        roles = self._tenant_roles(tenant)
        if tenant.schema is not None:
            with self._connect(tenant.database) as conn:
                claim = _schema_claim(conn, tenant.schema)
                if claim == (tag(tenant), tenant.owner):
                    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(tenant.schema)))
                    done.append(f"dropped schema {tenant.schema}")
                elif claim is not None:
                    done.append(f"left schema {tenant.schema} alone: pgfleet did not create it")
                if roles:
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(_idents(roles)))
        with self._connect() as conn:
            if roles:
                # Privileges on shared objects (CONNECT on a database) go with DROP OWNED here.
                conn.execute(sql.SQL("DROP OWNED BY {}").format(_idents(roles)))
                conn.execute(sql.SQL("DROP ROLE {}").format(_idents(roles)))
                done.append(f"dropped role(s) {', '.join(roles)}")
        return f"{ended} session(s) ended; " + ("; ".join(done) or "nothing left to drop")

    def _tenant_roles(self, tenant: TenantSpec) -> list[str]:
        with self._connect() as conn:
            return [r for r in tenant.roles if _role_tag(conn, r) == tag(tenant)]

    def dump_tenant(self, tenant: TenantSpec, label: str, passphrase: str) -> LogicalDump:
        process.make_owned_dir(self._dumps_dir.parent)
        process.make_owned_dir(self._dumps_dir)
        target = self._dumps_dir / f"{label}.dump"
        argv = pg_dump_argv(
            self._primary.bin_dir,
            self._primary.address.socket,
            self._primary.address.port,
            tenant.database,
            tenant.schema,
        )
        # Through openssl into the file: the plaintext dump only ever exists in the pipe.
        size = logical_dump.dump(argv, target, passphrase, timeout=DUMP_TIMEOUT_S)
        return LogicalDump(path=target, size_bytes=size)

    def set_tenant_writes(self, tenant: TenantSpec, allowed: bool) -> str:
        with self._connect() as conn:
            _require_tenant_role(conn, tenant, tenant.login)
            member = _exists(
                conn,
                "SELECT 1 FROM pg_catalog.pg_auth_members m"
                " WHERE m.roleid OPERATOR(pg_catalog.=) pg_catalog.to_regrole(%s)::pg_catalog.oid"
                " AND m.member OPERATOR(pg_catalog.=) pg_catalog.to_regrole(%s)::pg_catalog.oid",
                tenant.writer,
                tenant.login,
            )
            if allowed and member:
                return "writes allowed"
            login = sql.Identifier(tenant.login)
            ended = 0
            if allowed:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(tenant.writer), login))
                conn.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(login, sql.Literal(tenant.owner)))
            elif not allowed and member:
                conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(tenant.writer), login))
                # Sessions that already act as the owner would keep its privileges: end them.
                conn.execute(sql.SQL("ALTER ROLE {} RESET role").format(login))
                ended = _terminate(conn, tenant.login)
        with self._connect(tenant.database) as conn:
            schemas = _tenant_schemas(conn, tenant)
            if allowed:
                _restore_reader(conn, schemas, tenant.reader)
            else:
                _take_back(conn, schemas, owner=tenant.owner, strays=(tenant.login, tenant.writer))
                _grant_reads(conn, schemas, tenant.reader)
        if allowed:
            return "writes restored"
        return "writes suspended" + (f"; {ended} session(s) ended" if member else " (already)")

    def reclaim_space(self, database: str, schema: str | None = None) -> str:
        with self._connect(database, limits=VACUUM_LIMITS) as conn:
            if schema is None:
                conn.execute("VACUUM")
                return f"vacuumed database {database}"
            tables = conn.execute(
                "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname OPERATOR(pg_catalog.=) %s::pg_catalog.name AND c.relkind IN ('r', 'm')",
                (schema,),
            ).fetchall()
            if tables:
                names = sql.SQL(", ").join(sql.Identifier(schema, str(t[0])) for t in tables)
                conn.execute(sql.SQL("VACUUM {}").format(names))
        return f"vacuumed {len(tables)} table(s) of schema {schema}"

    def tenant_usage(self, tenants: list[TenantSpec]) -> dict[str, TenantUsage]:
        usage: dict[str, TenantUsage] = {}
        with self._connect() as conn:
            sessions = dict(
                conn.execute(
                    "SELECT usename, pg_catalog.count(*) FROM pg_catalog.pg_stat_activity"
                    " WHERE usename OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.name[]) GROUP BY usename",
                    ([t.login for t in tenants],),
                ).fetchall()
            )
            sizes = dict(
                conn.execute(
                    "SELECT datname, pg_catalog.pg_database_size(oid) FROM pg_catalog.pg_database"
                    " WHERE datname OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.name[])",
                    ([t.database for t in tenants if t.schema is None],),
                ).fetchall()
            )
        schema_sizes: dict[tuple[str, str], int] = {}
        by_database: dict[str, list[str]] = {}
        for t in tenants:
            if t.schema is not None:
                by_database.setdefault(t.database, []).append(t.schema)
        for database, schemas in by_database.items():
            with self._connect(database) as conn:
                rows = conn.execute(
                    "SELECT n.nspname, coalesce(pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::pg_catalog.int8"
                    " FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_class c"
                    "   ON c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relkind IN ('r', 'm')"
                    " WHERE n.nspname OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.name[]) GROUP BY n.nspname",
                    (schemas,),
                ).fetchall()
                schema_sizes.update({(database, str(name)): int(size) for name, size in rows})
        for t in tenants:
            size = (
                sizes.get(t.database, 0) if t.schema is None else schema_sizes.get((t.database, t.schema), 0)
            )
            usage[t.name] = TenantUsage(storage_bytes=int(size), connections=int(sessions.get(t.login, 0)))
        return usage

    # -- the whole server and its application role --

    def server_usage(self) -> ServerUsage:
        with self._connect() as conn:
            databases, wal = conn.execute(
                "SELECT (SELECT coalesce(pg_catalog.sum(pg_catalog.pg_database_size(oid)), 0) FROM pg_catalog.pg_database)::pg_catalog.int8,"
                " (SELECT coalesce(pg_catalog.sum(size), 0) FROM pg_catalog.pg_ls_waldir())::pg_catalog.int8"
            ).fetchone() or (0, 0)
        by_role: dict[str, int] = {}
        for target in (self._primary.address, *self._others):
            try:
                with self._connect(target=target) as conn:
                    rows = conn.execute(
                        "SELECT a.usename, pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a JOIN pg_catalog.pg_roles r ON r.rolname = a.usename"
                        " WHERE a.backend_type = 'client backend' AND NOT r.rolsuper GROUP BY a.usename"
                    ).fetchall()
            except EngineError:
                if target is self._primary.address:
                    raise
                continue  # a replica that is down has no sessions
            for role, count in rows:
                by_role[str(role)] = by_role.get(str(role), 0) + int(count)
        return ServerUsage(
            databases_bytes=int(databases),
            wal_bytes=int(wal),
            client_connections=sum(by_role.values()),
            connections_by_role=by_role,
        )

    def set_role_connection_limit(self, role: str, limit: int | None) -> str:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
                (role,),
            ).fetchone()
            if row is None:
                raise EngineError(f"role {role} does not exist")
            if row[0]:
                raise EngineError(f"refusing to limit superuser role {role}")
            value = -1 if limit is None else limit
            conn.execute(
                sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(sql.Identifier(role), sql.Literal(value))
            )
        return f"connection limit of {role}: {'unlimited' if limit is None else limit}"

    def set_owner_writes(self, database: str, role: str, allowed: bool) -> str:
        frozen = frozen_owner(role)
        with self._connect() as conn:
            row = conn.execute(
                "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database"
                " WHERE datname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
                (database,),
            ).fetchone()
            if row is None:
                raise EngineError(f"database {database} does not exist")
            owner = str(row[0])
            if owner not in (role, frozen):
                raise EngineError(f"database {database} is owned by {owner}, not {role}")
            if allowed and owner == role:
                return f"writes of {role} allowed"
            if not allowed and owner == role:
                _ensure_frozen_role(conn, frozen)
        ident, frozen_ident = sql.Identifier(role), sql.Identifier(frozen)
        with self._connect(database) as conn:
            if allowed:
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(frozen_ident, ident))
                large_objects.restrict(conn, writers=[role])
                return f"writes of {role} restored (ownership of {database} given back)"
            changed = owner == role
            if changed:
                # An owner could grant itself back anything revoked: move the ownership away.
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(ident, frozen_ident))
                conn.execute(
                    sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident)
                )
            schemas = _schemas_owned_by(conn, frozen)
            _take_back(conn, schemas, owner=frozen, strays=(role,))
            _grant_reads(conn, schemas, role)
            # Large objects count towards the database but belong to no schema: no new ones.
            large_objects.restrict(conn, revoke_from=[role])
        for shared in large_objects.SERVER_DATABASES:  # nor any in a database it may still reach
            with self._connect(shared) as conn:
                large_objects.restrict(conn)
        if changed:
            with self._connect() as conn:
                ended = _terminate(conn, role)
            return f"writes of {role} suspended; {ended} session(s) ended"
        return f"writes of {role} suspended (already)"


# --- helpers (one connection each, superuser) ----------------------------------------------


def _exists(conn: psycopg.Connection, query: str, *params: object) -> bool:
    return conn.execute(query, params).fetchone() is not None  # type: ignore[arg-type]


def _idents(names: list[str] | tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _role_tag(conn: psycopg.Connection, role: str) -> str | None:
    row = conn.execute(
        "SELECT coalesce(pg_catalog.shobj_description(oid, 'pg_authid'), '') FROM pg_catalog.pg_roles"
        " WHERE rolname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
        (role,),
    ).fetchone()
    return None if row is None else str(row[0])


def _database_claim(conn: psycopg.Connection, database: str) -> tuple[str, bool] | None:
    """(comment, whether a superuser owns it) of `database`, None when there is none."""
    row = conn.execute(
        "SELECT coalesce(pg_catalog.shobj_description(d.oid, 'pg_database'), ''), r.rolsuper"
        " FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) d.datdba"
        " WHERE d.datname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
        (database,),
    ).fetchone()
    return None if row is None else (str(row[0]), bool(row[1]))


def _schema_claim(conn: psycopg.Connection, schema: str) -> tuple[str, str] | None:
    """(comment, owner) of `schema` in the database of `conn`, None when there is none."""
    row = conn.execute(
        "SELECT coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), ''), pg_catalog.pg_get_userbyid(n.nspowner)"
        " FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
        (schema,),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def _require_unclaimed_role(conn: psycopg.Connection, tenant: TenantSpec, role: str) -> None:
    found = _role_tag(conn, role)
    if found is not None and found != tag(tenant):
        raise AlreadyExists(f"role {role} already exists on the server and does not belong to this tenant")


def _require_unclaimed_database(conn: psycopg.Connection, tenant: TenantSpec) -> None:
    """The tenant's database is absent, or is the one pgfleet made for it: marked as the
    tenant's and owned by the platform (a marker alone proves nothing: its owner can set it)."""
    found = _database_claim(conn, tenant.database)
    if found is None:
        return
    marker, platform_owned = found
    if marker != tag(tenant):
        raise AlreadyExists(f"database {tenant.database} already exists and does not belong to this tenant")
    if not platform_owned:
        raise AlreadyExists(
            f"database {tenant.database} already exists and pgfleet did not create it: it is not owned by"
            " the platform (a tenant's database always is); rename or drop it, or pick another tenant id"
        )


def _require_unclaimed_schema(conn: psycopg.Connection, tenant: TenantSpec) -> None:
    """The tenant's schema is absent, or is the one pgfleet made for it: marked as the tenant's
    and owned by its owner role (anyone may create a schema and comment on it)."""
    assert tenant.schema is not None
    found = _schema_claim(conn, tenant.schema)
    if found is None:
        return
    marker, owner = found
    if marker != tag(tenant):
        raise AlreadyExists(f"schema {tenant.schema} already exists and does not belong to this tenant")
    if owner != tenant.owner:
        raise AlreadyExists(
            f"schema {tenant.schema} already exists and pgfleet did not create it: it is owned by {owner},"
            f" not by the tenant's owner role {tenant.owner}; rename or drop it, or pick another tenant id"
        )


def _require_tenant_role(conn: psycopg.Connection, tenant: TenantSpec, role: str) -> None:
    if _role_tag(conn, role) != tag(tenant):
        raise EngineError(f"role {role} of tenant {tenant.name} does not exist")


def _ensure_role(conn: psycopg.Connection, role: str, marker: str, login: bool) -> list[str]:
    """Create `role` marked as the tenant's, or accept it when it already is."""
    found = _role_tag(conn, role)
    if found is None:
        kind = sql.SQL("LOGIN") if login else sql.SQL("NOLOGIN")
        try:
            conn.execute(sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(role), kind))
        except pg_errors.DuplicateObject:
            found = _role_tag(conn, role)  # created concurrently: judge it below
        else:
            conn.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(marker))
            )
            return [f"created role {role}"]
    if found != marker:
        raise AlreadyExists(f"role {role} already exists on the server and does not belong to this tenant")
    return []


def _ensure_frozen_role(conn: psycopg.Connection, role: str) -> None:
    if _role_tag(conn, role) is None:
        with contextlib.suppress(pg_errors.DuplicateObject):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(FROZEN_TAG))
        )


def _ensure_tenant_database(conn: psycopg.Connection, tenant: TenantSpec) -> list[str]:
    """The tenant's database, owned by the platform superuser (so the tenant cannot change its
    connection limit or open it to others), reachable by the tenant's roles only."""
    db = sql.Identifier(tenant.database)
    done = []
    if _database_claim(conn, tenant.database) is None:
        with contextlib.suppress(pg_errors.DuplicateDatabase):  # created concurrently: judged below
            conn.execute(sql.SQL("CREATE DATABASE {}").format(db))
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(tag(tenant))))
            done.append(f"created database {tenant.database}")
    _require_unclaimed_database(conn, tenant)
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, sql.Identifier(tenant.reader)))
    conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(db, sql.Identifier(tenant.writer)))
    conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(db, sql.Identifier(tenant.owner)))
    return done


def _default_privileges(conn: psycopg.Connection, tenant: TenantSpec) -> None:
    """What the owner creates is readable by the reader; routines are not executable by
    PUBLIC (a SECURITY DEFINER routine would write as the owner for anyone)."""
    owner, reader = sql.Identifier(tenant.owner), sql.Identifier(tenant.reader)
    scope: sql.Composable = sql.SQL("")
    if tenant.schema is not None:
        scope = sql.SQL(" IN SCHEMA {}").format(sql.Identifier(tenant.schema))
    conn.execute(
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE EXECUTE ON ROUTINES FROM PUBLIC").format(owner)
    )
    grants: tuple[LiteralString, ...] = ("SELECT ON TABLES", "SELECT ON SEQUENCES", "EXECUTE ON ROUTINES")
    for what in grants:
        conn.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {}{} GRANT {} TO {}").format(
                owner, scope, sql.SQL(what), reader
            )
        )


def _prepare_tenant_database(conn: psycopg.Connection, tenant: TenantSpec) -> None:
    """Inside the tenant's own database: the owner takes `public`, only the tenant reads it."""
    public = sql.Identifier("public")
    conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(public, sql.Identifier(tenant.owner)))
    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(public))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(public, sql.Identifier(tenant.reader)))
    _default_privileges(conn, tenant)
    # Tenants never write large objects (an earlier version granted them to the writer).
    large_objects.restrict(conn, revoke_from=[tenant.writer])


def _prepare_tenant_schema(conn: psycopg.Connection, tenant: TenantSpec) -> list[str]:
    """Inside the shared database: the tenant's schema, owned by its owner, used by its reader
    only; nobody but the database owner creates anything in `public`."""
    assert tenant.schema is not None
    schema = sql.Identifier(tenant.schema)
    done = []
    if _schema_claim(conn, tenant.schema) is None:
        with contextlib.suppress(pg_errors.DuplicateSchema):  # created concurrently: judged below
            conn.execute(
                sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(schema, sql.Identifier(tenant.owner))
            )
            conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(schema, sql.Literal(tag(tenant))))
            done.append(f"created schema {tenant.schema}")
    _require_unclaimed_schema(conn, tenant)
    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, sql.Identifier(tenant.reader)))
    conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    db = sql.Identifier(tenant.database)
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, sql.Identifier(tenant.reader)))
    _default_privileges(conn, tenant)
    # The shared database's owner keeps writing large objects (counted in its database's usage);
    # the tenant never does (an earlier version granted them to the writer).
    large_objects.restrict(conn, writers=large_objects.owner_writers(conn), revoke_from=[tenant.writer])
    return done


def _terminate(conn: psycopg.Connection, role: str) -> int:
    rows = conn.execute(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
        " WHERE usename OPERATOR(pg_catalog.=) %s::pg_catalog.name AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()",
        (role,),
    ).fetchall()
    return len(rows)


def _tenant_schemas(conn: psycopg.Connection, tenant: TenantSpec) -> list[tuple[int, str]]:
    """(oid, name) of the schemas a tenant writes into: its schema, or in its own database
    every schema but the system ones."""
    if tenant.schema is not None:
        rows = conn.execute(
            "SELECT oid, nspname FROM pg_catalog.pg_namespace"
            " WHERE nspname OPERATOR(pg_catalog.=) %s::pg_catalog.name AND nspowner OPERATOR(pg_catalog.=) pg_catalog.to_regrole(%s)::pg_catalog.oid",
            (tenant.schema, tenant.owner),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT oid, nspname FROM pg_catalog.pg_namespace"
            " WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> 'information_schema'"
        ).fetchall()
    return [(int(oid), str(name)) for oid, name in rows]


def _schemas_owned_by(conn: psycopg.Connection, role: str) -> list[tuple[int, str]]:
    rows = conn.execute(
        "SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n"
        " WHERE n.nspowner OPERATOR(pg_catalog.=) pg_catalog.to_regrole(%s)::pg_catalog.oid"
        " OR (n.nspname OPERATOR(pg_catalog.=) 'public'::pg_catalog.name"
        "     AND n.nspowner OPERATOR(pg_catalog.=) 'pg_database_owner'::pg_catalog.regrole::pg_catalog.oid)",
        (role,),
    ).fetchall()
    return [(int(oid), str(name)) for oid, name in rows]


# Grantees (other than the owner of each object) of the objects in some schemas, for
# `_take_back`: (oid, name), 0 and "PUBLIC" standing for PUBLIC.
GRANTEES_OF = {
    kind: sql.SQL(
        "SELECT DISTINCT a.grantee, coalesce(r.rolname, 'PUBLIC') FROM {table} x"
        " CROSS JOIN LATERAL pg_catalog.aclexplode(x.{acl}) a LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee"
        " WHERE x.{namespace} OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.oid[]) AND a.grantee OPERATOR(pg_catalog.<>) x.{owner}"
    ).format(
        table=sql.Identifier("pg_catalog", table),
        acl=sql.Identifier(acl),
        namespace=sql.Identifier(namespace),
        owner=sql.Identifier(owner),
    )  # fmt: skip
    for kind, table, acl, namespace, owner in (
        ("schemas", "pg_namespace", "nspacl", "oid", "nspowner"),
        ("relations", "pg_class", "relacl", "relnamespace", "relowner"),
    )
}


def _grantees(conn: psycopg.Connection, kind: str, oids: list[int]) -> list[sql.Composable]:
    rows = conn.execute(GRANTEES_OF[kind], (oids,)).fetchall()
    return [sql.SQL("PUBLIC") if grantee == 0 else sql.Identifier(str(name)) for grantee, name in rows]


def _take_back(
    conn: psycopg.Connection, schemas: list[tuple[int, str]], owner: str, strays: tuple[str, ...]
) -> None:
    """Leave nobody but the owners able to write into `schemas`: objects that `strays` own
    move to `owner`; every other role loses CREATE on the schemas, every privilege but SELECT
    on the relations and sequences, EXECUTE on the owner's SECURITY DEFINER routines (they
    would write as the owner), and its privileges on the owner's large objects. SELECT stays,
    so reads granted to others survive a suspension."""
    if not schemas:
        return
    owner_ident = sql.Identifier(owner)
    for stray in strays:
        if _role_tag(conn, stray) is not None:
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(sql.Identifier(stray), owner_ident))
    oids = [oid for oid, _ in schemas]
    names = sql.SQL(", ").join(sql.Identifier(name) for _, name in schemas)
    if on_schemas := _grantees(conn, "schemas", oids):
        conn.execute(
            sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(names, sql.SQL(", ").join(on_schemas))
        )
    if on_relations := _grantees(conn, "relations", oids):
        grantees = sql.SQL(", ").join(on_relations)
        conn.execute(
            sql.SQL(
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA {} FROM {}"
            ).format(names, grantees)
        )
        conn.execute(
            sql.SQL("REVOKE USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(names, grantees)
        )
    # The owner's SECURITY DEFINER routines would write as the owner for whoever calls them.
    conn.execute("SELECT pg_catalog.set_config('pgfleet.owner', %s::pg_catalog.text, false),"
                 " pg_catalog.set_config('pgfleet.schemas', %s::pg_catalog.text, false)",
                 (owner, "{" + ",".join(str(o) for o in oids) + "}"))  # fmt: skip
    conn.execute(REVOKE_DEFINER_ROUTINES)
    shared = conn.execute(
        "SELECT m.oid, a.grantee, coalesce(r.rolname, 'PUBLIC') FROM pg_catalog.pg_largeobject_metadata m"
        " CROSS JOIN LATERAL pg_catalog.aclexplode(m.lomacl) a LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee"
        " WHERE m.lomowner OPERATOR(pg_catalog.=) pg_catalog.to_regrole(%s)::pg_catalog.oid AND a.grantee OPERATOR(pg_catalog.<>) m.lomowner",
        (owner,),
    ).fetchall()
    for lo_oid, grantee, name in shared:
        who = sql.SQL("PUBLIC") if grantee == 0 else sql.Identifier(str(name))
        conn.execute(sql.SQL("REVOKE ALL ON LARGE OBJECT {} FROM {}").format(sql.Literal(int(lo_oid)), who))


def _grant_reads(conn: psycopg.Connection, schemas: list[tuple[int, str]], reader: str) -> None:
    """What a suspended role keeps: USAGE and SELECT, and DELETE/TRUNCATE where emptying a
    table cannot write anything else (so it can get back under its quota)."""
    if not schemas:
        return
    names = sql.SQL(", ").join(sql.Identifier(name) for _, name in schemas)
    who = sql.Identifier(reader)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(names, who))
    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(names, who))
    conn.execute(sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(names, who))
    for _, schema, table in conn.execute(SAFE_TO_EMPTY, ([oid for oid, _ in schemas],)).fetchall():
        conn.execute(
            sql.SQL("GRANT DELETE, TRUNCATE ON TABLE {} TO {}").format(
                sql.Identifier(str(schema), str(table)), who
            )
        )


def _restore_reader(conn: psycopg.Connection, schemas: list[tuple[int, str]], reader: str) -> None:
    """Back to a plain reader once writes return through the writer role."""
    if not schemas:
        return
    names = sql.SQL(", ").join(sql.Identifier(name) for _, name in schemas)
    who = sql.Identifier(reader)
    conn.execute(sql.SQL("REVOKE DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {} FROM {}").format(names, who))
    conn.execute(sql.SQL("GRANT EXECUTE ON ALL ROUTINES IN SCHEMA {} TO {}").format(names, who))
