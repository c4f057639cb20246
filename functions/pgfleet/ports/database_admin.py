"""The DatabaseAdmin port: tenants, quotas and usage inside one running PostgreSQL server.

An engine hands out a `DatabaseAdmin` for a server it runs (`Engine.database_admin`) or for
the current primary of a cluster (`ClusterEngine.database_admin`); for a cluster the admin is
bound to the primary at the moment it is handed out, so services ask for a fresh one per call.

Privilege model of a tenant (what makes its quotas impossible to escape):

- `owner` (NOLOGIN) owns the tenant's schema(s) and every object in them. In
  database_per_tenant mode the database itself belongs to the platform superuser, so the
  tenant can neither raise the database's connection limit nor open it to others.
- `writer` (NOLOGIN) is a member of `owner`; `reader` (NOLOGIN) holds USAGE and SELECT.
- `login` is a member of `writer` and `reader`, and its sessions start as `owner` (`SET role`),
  so whatever a tenant creates is owned by `owner`, never by `login`.

Suspending writes revokes `writer` from `login`, ends its sessions, takes back anything the
tenant granted or owns outside that model (objects owned by the login move to `owner`; write
privileges granted to anyone, and EXECUTE on the owner's SECURITY DEFINER routines, are
revoked; SELECT grants stay), and leaves `reader` with SELECT plus DELETE and TRUNCATE where
those cannot write anything else (no rules, user triggers, inheritance children, or
cascading foreign keys), so a tenant over its storage quota can still read and free space.
Large objects cannot be created or grown by tenants at all, whatever role they act as (they
would count towards no schema); an application role writes them only in the database it owns
(its usage counts them), and not while its writes are suspended.

What belongs to a tenant is marked with its tag (a comment) and owned as pgfleet makes it: its
database by the platform superuser, its schema by its `owner` role. A tag alone proves
nothing (whoever owns a schema may comment on it), so a database or schema of the tenant's
name that is not owned that way was not made by pgfleet and is refused.

Every method connects as the superuser over the server's private socket, in a session pinned
to `search_path = pg_catalog, pg_temp` with every object it names schema-qualified (and its
parameters typed), so nothing a customer creates in its databases runs in it. It quotes every
identifier with psycopg.sql, never logs a password, is idempotent unless it says otherwise,
and raises `EngineError` when the server cannot be reached or refuses, `AlreadyExists` when a
role, database or schema of that name exists and does not belong to the tenant.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

DATABASE_PER_TENANT = "database_per_tenant"
SCHEMA_PER_TENANT = "schema_per_tenant"
TENANT_MODES = (DATABASE_PER_TENANT, SCHEMA_PER_TENANT)


@dataclass(frozen=True)
class TenantSpec:
    """One tenant's names on a server. `schema` is None in database_per_tenant mode, where
    the tenant owns every schema of `database`; in schema_per_tenant mode `database` is the
    shared database holding `schema`. `max_connections` None means unlimited."""

    name: str  # the API's tenant_id, used in comments that mark what belongs to the tenant
    mode: str
    database: str
    schema: str | None
    login: str
    owner: str
    writer: str
    reader: str
    max_connections: int | None = None

    @property
    def roles(self) -> tuple[str, str, str, str]:
        return (self.login, self.writer, self.reader, self.owner)


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant uses now: bytes of its database or schema (tables, indexes, TOAST) and
    its open sessions."""

    storage_bytes: int
    connections: int


@dataclass(frozen=True)
class ServerUsage:
    """What a whole server uses now. `databases_bytes` sums every database; with
    `wal_bytes` it approximates the data directory. `client_connections` counts sessions of
    non-superuser roles (on every node of a cluster); `connections_by_role` breaks them down."""

    databases_bytes: int
    wal_bytes: int
    client_connections: int
    connections_by_role: dict[str, int]

    @property
    def data_directory_bytes(self) -> int:
        return self.databases_bytes + self.wal_bytes


@dataclass(frozen=True)
class LogicalDump:
    """A logical backup file written by `dump_tenant`."""

    path: Path
    size_bytes: int


class DatabaseAdmin(abc.ABC):
    """Administers one running server. See the module docstring for the shared contract."""

    @abc.abstractmethod
    def create_tenant(self, tenant: TenantSpec, password: str) -> str:
        """Create (or bring up to date) the tenant's roles, its database or schema, its
        privileges and connection limits; the login role gets `password` (a SCRAM verifier
        computed client-side). Also closes the `postgres` and `template1` databases to PUBLIC
        so tenants can connect to nothing but their own database. Every name is checked
        before anything is created: AlreadyExists (saying why) for a role, database or schema
        that is not the tenant's as the module docstring defines it. Returns what changed."""

    @abc.abstractmethod
    def drop_tenant(self, tenant: TenantSpec) -> str:
        """End the tenant's sessions, drop its database (or its schema, CASCADE) and its four
        roles. A tenant that is already gone is not an error. Not reversible."""

    @abc.abstractmethod
    def block_logins(self, tenant: TenantSpec) -> str:
        """Make the login role NOLOGIN and end its sessions (before a final backup and drop),
        so nothing is written after the backup. Idempotent."""

    @abc.abstractmethod
    def dump_tenant(self, tenant: TenantSpec, label: str, passphrase: str) -> LogicalDump:
        """pg_dump (custom format) of exactly the tenant's database or schema into the engine's
        directory of logical backups of this server, as `<label>.dump` (overwriting an earlier
        attempt with the same label), encrypted with `passphrase` (aes-256-cbc, like the
        backup repository: no plaintext of the dump ever reaches the disk). Blocks until
        written (at most the engine's dump timeout)."""

    @abc.abstractmethod
    def set_connection_limit(self, tenant: TenantSpec) -> str:
        """Apply `tenant.max_connections` to the login role (and, in database_per_tenant mode,
        to the database). Sessions already open stay; the next one over the limit is refused."""

    @abc.abstractmethod
    def set_tenant_writes(self, tenant: TenantSpec, allowed: bool) -> str:
        """Suspend (`allowed=False`) or restore the tenant's writes as the module docstring
        describes. Suspending ends the login role's sessions only when it changes something."""

    @abc.abstractmethod
    def reclaim_space(self, database: str, schema: str | None = None) -> str:
        """VACUUM the tables of `database` (only those in `schema`, when given), so rows a
        suspended tenant or application deleted give their space back and its usage can drop
        under the quota (plain VACUUM: no exclusive lock held, empty trailing pages returned to
        the file system). Blocks while it runs."""

    @abc.abstractmethod
    def tenant_usage(self, tenants: list[TenantSpec]) -> dict[str, TenantUsage]:
        """Usage of each tenant, by `TenantSpec.name`. A tenant whose database or schema does
        not exist uses nothing. One connection per database involved."""

    @abc.abstractmethod
    def server_usage(self) -> ServerUsage:
        """Sizes and client sessions of the whole server (all nodes, for connections)."""

    @abc.abstractmethod
    def set_role_connection_limit(self, role: str, limit: int | None) -> str:
        """CONNECTION LIMIT of an application role (None: unlimited). Refuses superusers."""

    @abc.abstractmethod
    def set_owner_writes(self, database: str, role: str, allowed: bool) -> str:
        """Suspend or restore the writes of `role`, the owner of `database` (the application
        role of an instance). An owner could grant itself back anything revoked, so
        suspending moves the ownership of the database and of everything `role` owns in it to
        a NOLOGIN stand-in role and leaves `role` with CONNECT, SELECT, and DELETE/TRUNCATE
        where safe; restoring moves it back. Sessions of `role` end when this suspends."""
