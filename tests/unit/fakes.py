"""In-memory fakes of the ports, for unit tests of services and handlers."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgfleet.core.errors import AlreadyExists, Conflict, NotFound, StoreError
from pgfleet.core.settings import Settings
from pgfleet.ports.cluster_engine import (
    ClusterEngine,
    ClusterSpec,
    DcsStatus,
    NodeSpec,
    NodeState,
    ReplicaStatus,
    ReplicationStatus,
)
from pgfleet.ports.database_admin import (
    DatabaseAdmin,
    LogicalDump,
    ServerUsage,
    TenantSpec,
    TenantUsage,
)
from pgfleet.ports.engine import (
    Engine,
    HostCapacity,
    LogicalReadiness,
    LogLine,
    ReplicaLag,
    ServerSpec,
    ServerState,
    ServerStats,
    SubscriptionProgress,
    replication_slot_name,
)
from pgfleet.ports.events import EventPush
from pgfleet.ports.history import HistoryPage, HistoryRecord, HistoryStore, check_query, check_stream
from pgfleet.ports.metadata import (
    FILTERABLE_STRING_LENGTH,
    Create,
    Filters,
    MetadataStore,
    Range,
    Record,
    Update,
    Write,
)
from pgfleet.ports.object_store import DEFAULT_LINK_SECONDS, ObjectStore
from pgfleet.ports.pooler import Pooler, PoolerSpec, PoolerState
from pgfleet.ports.queue import Queue, QueueDepth
from pgfleet.ports.rate_limits import RateCounter, WindowCounts
from pgfleet.ports.scheduler import Schedule, Scheduler
from pgfleet.ports.secrets import Secrets
from tests.unit.backup_fakes import FakeBackupEngine, FakeRestoreHost


class FakeStore(MetadataStore):
    """Records and claims in dicts. `fail_writes_of` holds kinds whose writes fail (StoreError),
    as a store that breaks between two writes: a transaction touching one writes nothing."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], Record] = {}
        self.claims: dict[str, dict[str, Any]] = {}
        self.fail_writes_of: set[str] = set()

    def _check(self, write: Write) -> None:
        if write.kind in self.fail_writes_of:
            raise StoreError(f"could not write {write.kind} (injected)")
        if isinstance(write, Create):
            if (write.kind, write.record["id"]) in self.records or any(
                k in self.claims for k in write.unique_keys
            ):
                raise AlreadyExists(f"{write.kind} already exists")
            return
        current = self.records.get((write.kind, write.record_id))
        if current is None:
            raise NotFound(f"{write.kind} {write.record_id} not found")
        if write.expected_revision is not None and current["revision"] != write.expected_revision:
            raise Conflict("stale")

    def _apply(self, write: Write) -> Record:
        if isinstance(write, Create):
            stored = {**copy.deepcopy(write.record), "revision": 1}
            self.records[(write.kind, write.record["id"])] = stored
            for k in write.unique_keys:
                self.claims[k] = {"owner": write.record["id"], "value": None}
            return copy.deepcopy(stored)
        current = self.records[(write.kind, write.record_id)]
        current.update(copy.deepcopy(write.changes))
        current["revision"] += 1
        return copy.deepcopy(current)

    def transact(self, writes: Sequence[Write]) -> list[Record]:
        assert 1 <= len(writes) <= 10
        for write in writes:
            self._check(write)
        return [self._apply(write) for write in writes]

    def create(self, kind: str, record: Record, unique_keys: tuple[str, ...] = ()) -> Record:
        (stored,) = self.transact([Create(kind, record, unique_keys)])
        return stored

    def get(self, kind: str, record_id: str) -> Record | None:
        found = self.records.get((kind, record_id))
        return copy.deepcopy(found) if found else None

    def update(
        self, kind: str, record_id: str, changes: Record, expected_revision: int | None = None
    ) -> Record:
        (stored,) = self.transact([Update(kind, record_id, changes, expected_revision)])
        return stored

    def delete(self, kind: str, record_id: str, unique_keys: tuple[str, ...] = ()) -> None:
        self.records.pop((kind, record_id), None)
        for k in unique_keys:
            self.claims.pop(k, None)

    def list(self, kind, *, tenant_id=None, parent_id=None, limit=100, next_token=None):  # type: ignore[no-untyped-def]
        rows = [
            copy.deepcopy(r)
            for (k, _), r in self.records.items()
            if k == kind
            and (tenant_id is None or r.get("tenant_id") == tenant_id)
            and (parent_id is None or r.get("parent_id") == parent_id)
        ]
        rows.sort(key=lambda r: (r.get("created_at", ""), r["id"]))
        start = int(next_token or 0)
        page = rows[start : start + limit]
        return page, (str(start + limit) if start + limit < len(rows) else None)

    def _matching(
        self, kind: str, tenant_id: str | None, parent_id: str | None, filters: Filters | None
    ) -> list[Record]:
        """The records of a scope that pass `filters`, oldest first (the port's semantics)."""
        rows, _ = self.list(kind, tenant_id=tenant_id, parent_id=parent_id, limit=len(self.records) + 1)
        return [r for r in rows if all(_passes(r.get(f), w) for f, w in (filters or {}).items())]

    def page(
        self,
        kind: str,
        *,
        tenant_id: str | None = None,
        parent_id: str | None = None,
        filters: Filters | None = None,
        page: int,
        page_size: int,
        newest_first: bool = True,
    ) -> tuple[list[Record], int]:
        assert page >= 1 and page_size >= 1
        rows = self._matching(kind, tenant_id, parent_id, filters)
        if newest_first:
            rows.reverse()
        start = (page - 1) * page_size
        return rows[start : start + page_size], len(rows)

    def tally(
        self,
        kind: str,
        fields: tuple[str, ...],
        *,
        tenant_id: str | None = None,
        parent_id: str | None = None,
        filters: Filters | None = None,
    ) -> dict[str, dict[Any, int]]:
        counts: dict[str, dict[Any, int]] = {f: {} for f in fields}
        for row in self._matching(kind, tenant_id, parent_id, filters):
            for f in fields:
                value = row.get(f) if _filterable(row.get(f)) else None
                counts[f][value] = counts[f].get(value, 0) + 1
        return counts

    def claim(self, key: str, owner: str, value: Record | None = None) -> bool:
        held = self.claims.get(key)
        if held and held["owner"] != owner:
            return False
        self.claims[key] = {"owner": owner, "value": value}
        return True

    def claimed(self, key: str) -> Record | None:
        return copy.deepcopy(self.claims.get(key))

    def release(self, key: str, owner: str | None = None) -> None:
        held = self.claims.get(key)
        if held and (owner is None or held["owner"] == owner):
            del self.claims[key]


def _filterable(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= FILTERABLE_STRING_LENGTH
    return isinstance(value, bool | int | float)


def _passes(value: Any, wanted: Any) -> bool:
    """One filter of `MetadataStore.page`, as the DynamoDB adapter applies it."""
    if wanted is not None and not isinstance(wanted, Range | list | tuple | set | frozenset):
        assert _filterable(wanted), f"cannot filter on {wanted!r}"
    if not _filterable(value):
        return wanted is None
    if wanted is None:
        return False
    if isinstance(wanted, Range):
        return (wanted.low is None or value >= wanted.low) and (wanted.high is None or value <= wanted.high)
    if isinstance(wanted, list | tuple | set | frozenset):
        return value in wanted
    return bool(value == wanted)


class FakeQueue(Queue):
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.in_flight = 0  # what a worker would be running now; tests set it

    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> None:
        self.messages.append(message)

    def depth(self) -> QueueDepth:
        return QueueDepth(waiting=len(self.messages), in_flight=self.in_flight, delayed=0)


class FakeSecrets(Secrets):
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def put(self, name: str, value: str) -> None:
        self.values[name] = value

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def delete(self, name: str) -> None:
        self.values.pop(name, None)


class FakeScheduler(Scheduler):
    def __init__(self) -> None:
        self.schedules: dict[str, Schedule] = {}

    def put(self, schedule: Schedule) -> None:
        self.schedules[schedule.name] = schedule

    def delete(self, name: str) -> None:
        self.schedules.pop(name, None)

    def get(self, name: str) -> Schedule | None:
        return self.schedules.get(name)


class FakeRateCounter(RateCounter):
    """Counts in a dict, as the DynamoDB item does (one per key and hour, minutes inside)."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}

    def hit(self, key: str, hour_start: int, minute: int, expires_at: int) -> WindowCounts:
        item = self.counts.setdefault(f"{key}#{hour_start}", {})
        item["n"] = item.get("n", 0) + 1
        item[f"m{minute:02d}"] = item.get(f"m{minute:02d}", 0) + 1
        item.setdefault("expires_at", expires_at)
        return WindowCounts(hour=item["n"], minute=item[f"m{minute:02d}"])

    def sweep_expired(self, now: int, *, dry_run: bool = False) -> tuple[int, int]:
        keys = [k for k, item in self.counts.items() if item.get("expires_at", now + 1) <= now]
        size = sum(len(k) + len(repr(self.counts[k])) for k in keys)
        if not dry_run:
            for key in keys:
                del self.counts[key]
        return len(keys), size


class FakeHistoryStore(HistoryStore):
    """Records in a list, read as the port says: a query "scans" only the records of its scope
    (the target, else the tenant, else the stream) within its time range. `now` is the clock
    expiry is judged by (tests move it)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str | None, datetime, str], HistoryRecord] = {}
        self.now: datetime | None = None  # None: the wall clock

    def _clock(self) -> datetime:
        return self.now or datetime.now(UTC)

    def append(self, stream: str, records: Sequence[HistoryRecord]) -> None:
        check_stream(stream)
        for record in records:
            if record.stream != stream or record.at.tzinfo is None:
                raise ValueError(f"record {record.id} is not an aware record of {stream!r}")
            key = (stream, record.target_id, record.at.astimezone(UTC), record.id)
            self.records[key] = copy.deepcopy(record)

    def query(
        self,
        stream: str,
        *,
        start: datetime,
        end: datetime,
        target_id: str | None = None,
        tenant_id: str | None = None,
        filters: dict[str, Any] | None = None,
        page: int = 1,
        page_size: int = 50,
        newest_first: bool = True,
        visit: Any = None,
    ) -> HistoryPage:
        check_stream(stream)
        check_query(start, end, page, page_size)
        now = self._clock()
        scope = [
            r
            for (s, target, at, _), r in self.records.items()
            if s == stream
            and start <= at < end
            and (
                target == target_id
                if target_id is not None
                else tenant_id is None or r.tenant_id == tenant_id
            )
            and not r.expired(now)
        ]
        matching = [
            r for r in scope if (tenant_id is None or r.tenant_id == tenant_id) and r.matches(filters)
        ]
        matching.sort(key=lambda r: (r.at, r.id), reverse=newest_first)
        for record in matching if visit is not None else ():
            visit(copy.deepcopy(record))
        offset = (page - 1) * page_size
        items = [copy.deepcopy(r) for r in matching[offset : offset + page_size]]
        return HistoryPage(items=items, total_items=len(matching), scanned_count=len(scope))

    def purge(
        self, stream: str, before: datetime, *, tenant_id: str | None = None, dry_run: bool = False
    ) -> tuple[int, int]:
        keys = [
            key for key, r in self.records.items()
            if key[0] == stream and r.at < before and (tenant_id is None or r.tenant_id == tenant_id)
        ]  # fmt: skip
        size = sum(len(repr(self.records[k].data)) for k in keys)
        if not dry_run:
            for key in keys:
                del self.records[key]
        return len(keys), size

    def sweep_expired(self, now: datetime) -> int:
        expired = [key for key, r in self.records.items() if r.expired(now)]
        for key in expired:
            del self.records[key]
        return len(expired)


class FakeDatabaseAdmin(DatabaseAdmin):
    """One server's tenants, usage and write suspensions, in memory. Tests set `usage` (per
    tenant) and `server` (the whole server) to what the next measurement should find."""

    def __init__(self) -> None:
        self.tenants: dict[str, dict[str, Any]] = {}
        self.usage: dict[str, TenantUsage] = {}
        self.server = ServerUsage(databases_bytes=8 * 2**20, wal_bytes=16 * 2**20, client_connections=0,
                                  connections_by_role={})  # fmt: skip
        self.role_limits: dict[str, int | None] = {}
        self.owner_writes: dict[tuple[str, str], bool] = {}
        self.dumps: list[LogicalDump] = []
        self.vacuumed: list[tuple[str, str | None]] = []

    def create_tenant(self, tenant: TenantSpec, password: str) -> str:
        if any(t["spec"].login == tenant.login and n != tenant.name for n, t in self.tenants.items()):
            raise AlreadyExists(f"role {tenant.login} already exists")
        self.tenants[tenant.name] = {"spec": tenant, "password": password, "writes": True, "login": True}
        return "tenant created"

    def drop_tenant(self, tenant: TenantSpec) -> str:
        self.tenants.pop(tenant.name, None)
        return "tenant dropped"

    def block_logins(self, tenant: TenantSpec) -> str:
        if tenant.name in self.tenants:
            self.tenants[tenant.name]["login"] = False
        return "logins blocked"

    def dump_tenant(self, tenant: TenantSpec, label: str, passphrase: str) -> LogicalDump:
        assert passphrase, "a tenant's dump is encrypted"
        dump = LogicalDump(Path(f"/fake/logical-backups/{label}-{len(self.dumps)}.dump"), 4096)
        self.dumps.append(dump)
        return dump

    def set_connection_limit(self, tenant: TenantSpec) -> str:
        self.role_limits[tenant.login] = tenant.max_connections
        return "limit set"

    def set_tenant_writes(self, tenant: TenantSpec, allowed: bool) -> str:
        self.tenants[tenant.name]["writes"] = allowed
        return "writes allowed" if allowed else "writes suspended"

    def reclaim_space(self, database: str, schema: str | None = None) -> str:
        self.vacuumed.append((database, schema))
        return "vacuumed"

    def tenant_usage(self, tenants: list[TenantSpec]) -> dict[str, TenantUsage]:
        return {t.name: self.usage.get(t.name, TenantUsage(0, 0)) for t in tenants}

    def server_usage(self) -> ServerUsage:
        return self.server

    def set_role_connection_limit(self, role: str, limit: int | None) -> str:
        self.role_limits[role] = limit
        return "limit set"

    def set_owner_writes(self, database: str, role: str, allowed: bool) -> str:
        self.owner_writes[(database, role)] = allowed
        return "writes allowed" if allowed else "writes suspended"


class FakeEngine(Engine):
    """Keeps server states in memory; `fail_on` makes a method raise EngineError."""

    def __init__(self) -> None:
        self.servers: dict[str, dict[str, Any]] = {}
        self.slots: dict[str, set[str]] = {}  # source server id -> its replication slots
        self.admins: dict[str, FakeDatabaseAdmin] = {}
        self.limits: dict[str, tuple[int, float]] = {}  # server id -> (memory MB, cpu) applied
        self.fail_on: set[str] = set()
        self.missing: list[str] = []  # programs missing on the host; tests set them
        self.blocked: dict[str, list[str]] = {}  # server id -> client addresses refused
        self._pids = itertools.count(1000)
        # What the host has free; tests shrink it to see admission refuse.
        self.capacity: HostCapacity | None = HostCapacity(
            memory_total_mb=65536, memory_available_mb=65536, disk_total_gb=2000.0, disk_free_gb=2000.0
        )

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def host_capacity(self, cpu: bool = False) -> HostCapacity | None:
        return self.capacity

    def missing_tools(self) -> list[str]:
        return list(self.missing)

    def supported_versions(self) -> list[str]:
        return ["15", "18"]

    def _check(self, method: str) -> None:
        from pgfleet.core.errors import EngineError

        if method in self.fail_on:
            raise EngineError(f"{method} failed (injected)")

    def provision(self, spec: ServerSpec) -> str:
        self._check("provision")
        self.servers.setdefault(spec.server_id, {"running": False, "spec": spec})
        return "provisioned"

    def start(self, spec: ServerSpec) -> str:
        self._check("start")
        self.servers[spec.server_id].update(running=True, pid=next(self._pids))
        return "started"

    def stop(self, server_id: str) -> str:
        self._check("stop")
        if server_id in self.servers:
            self.servers[server_id]["running"] = False
        return "stopped"

    def restart(self, spec: ServerSpec) -> str:
        return self.start(spec)

    def destroy(self, server_id: str) -> str:
        self.servers.pop(server_id, None)
        return "destroyed"

    def state(self, server_id: str) -> ServerState:
        s = self.servers.get(server_id)
        if not s:
            return ServerState(False, False, False, reason="no data directory")
        return ServerState(
            True, s["running"], s["running"], s.get("pid"), "" if s["running"] else "not running"
        )

    def ensure_database(self, server_id: str, database: str, username: str, password: str) -> str:
        self.servers[server_id]["database"] = (database, username, password)
        return "database ready"

    def stats(self, server_id: str, database: str) -> ServerStats:
        return ServerStats(1, 0, 1, 100, 8_000_000, 12.5, 10, 0, 0.99, 0, datetime.now(UTC))

    def logs(self, server_id: str, limit: int, since: datetime | None = None) -> list[LogLine]:
        return [LogLine(datetime.now(UTC), "LOG", "database system is ready to accept connections")][:limit]

    def set_blocked_sources(self, server_id: str, addresses: list[str]) -> str:
        self._check("set_blocked_sources")
        if server_id not in self.servers:
            from pgfleet.core.errors import EngineError

            raise EngineError(f"server {server_id} is not provisioned")
        self.blocked[server_id] = sorted(set(addresses))
        return f"refused: {', '.join(self.blocked[server_id]) or 'none'}"

    def _running_source(self, server_id: str) -> None:
        from pgfleet.core.errors import EngineError

        if not self.servers.get(server_id, {}).get("running"):
            raise EngineError(f"source server {server_id} is not running")

    def provision_replica(self, spec: ServerSpec, source_server_id: str) -> str:
        self._check("provision_replica")
        self._running_source(source_server_id)
        self.slots.setdefault(source_server_id, set()).add(replication_slot_name(spec.server_id))
        self.servers.setdefault(spec.server_id, {"running": False, "spec": spec, "source": source_server_id})
        return "replica provisioned"

    def replica_status(self, source_server_id: str) -> list[ReplicaLag]:
        self._check("replica_status")
        self._running_source(source_server_id)
        streaming = {
            replication_slot_name(sid)
            for sid, s in self.servers.items()
            if s.get("source") == source_server_id and s["running"]
        }
        # A connected standby has caught up; a disconnected slot holds some WAL.
        return [
            ReplicaLag(slot, slot, "streaming", 0, 0.0)
            if slot in streaming
            else ReplicaLag(slot, "", "disconnected", 4096, None)
            for slot in sorted(self.slots.get(source_server_id, ()))
        ]

    def allow_replication(self, server_id: str, username: str, password: str, slot: str) -> str:
        self._check("allow_replication")
        self._running_source(server_id)
        self.slots.setdefault(server_id, set()).add(slot)
        self.servers[server_id]["replication_role"] = (username, password)
        return f"role {username} and slot {slot} ready"

    def wal_position(self, server_id: str) -> int:
        """A server's "wal" (tests raise it to play writes the cluster has not replayed)."""
        self._check("wal_position")
        self._running_source(server_id)
        return int(self.servers[server_id].get("wal", 0))

    def set_read_only(self, server_id: str, read_only: bool) -> int:
        self._check("set_read_only")
        self._running_source(server_id)
        self.servers[server_id]["read_only"] = read_only
        return int(self.servers[server_id].get("wal", 0))

    def drop_replication_slot(self, source_server_id: str, slot: str) -> str:
        self._check("drop_replication_slot")
        self._running_source(source_server_id)
        self.slots.get(source_server_id, set()).discard(slot)
        return "slot dropped"

    # major-version upgrade in place: the version moves with the data; the old one is kept
    # ("kept") until finish_upgrade.
    def server_version(self, server_id: str) -> str:
        self._check("server_version")
        return f"{self.servers[server_id]['spec'].version}.0"

    def upgrade_check(self, server_id: str, target_version: str, link: bool) -> list[str]:
        self._check("upgrade_check")
        return list(self.servers[server_id].get("upgrade_findings", []))

    def upgrade_space(self, server_id: str) -> tuple[int, int]:
        return int(self.servers[server_id].get("data_bytes", 10 << 20)), 1 << 40

    def prepare_upgrade(self, server_id: str, target_version: str) -> str:
        self._check("prepare_upgrade")
        return "new cluster initialised"

    def upgrade_data(self, spec: ServerSpec, link: bool) -> str:
        self._check("upgrade_data")
        server = self.servers[spec.server_id]
        if server["running"]:
            from pgfleet.core.errors import EngineError

            raise EngineError("server must be stopped for pg_upgrade")
        server.setdefault("kept", server["spec"])
        server["spec"] = spec
        return f"upgraded to {spec.version}"

    def roll_back_upgrade(self, server_id: str, target_version: str) -> str:
        server = self.servers[server_id]
        server["running"] = False
        if "kept" in server:
            server["spec"] = server.pop("kept")
        return "put back"

    def finish_upgrade(self, server_id: str, target_version: str) -> str:
        self.servers[server_id].pop("kept", None)
        return "old data removed"

    def after_upgrade(self, server_id: str) -> str:
        self._check("after_upgrade")
        return "analyzed"

    def apply_resources(self, spec: ServerSpec) -> str:
        self._check("apply_resources")
        self.limits[spec.server_id] = (spec.memory_mb, spec.cpu)
        return f"memory {spec.memory_mb} MB and {spec.cpu:g} CPU enforced (fake)"

    def release_resources(self, server_id: str) -> str:
        self.limits.pop(server_id, None)
        return "released"

    def database_admin(self, server_id: str) -> DatabaseAdmin:
        from pgfleet.core.errors import EngineError

        if not self.servers.get(server_id, {}).get("running"):
            raise EngineError(f"server {server_id} is not running")
        return self.admins.setdefault(server_id, FakeDatabaseAdmin())

    # --- logical replication (blue/green upgrades) ---
    # A copy is a server with "subscribed_to"; it is always caught up with its source's "wal".

    def logical_readiness(self, server_id: str, target_version: str) -> LogicalReadiness:
        self._check("logical_readiness")
        self._running_source(server_id)
        server = self.servers[server_id]
        return LogicalReadiness(
            wal_level=server.get("wal_level", "replica"), databases=["app", "postgres"],
            tables_without_key=list(server.get("tables_without_key", [])), unlogged_tables=[], large_objects=[],
            missing_extensions=[], ddl_in_flight=[], free_slots=10, free_wal_senders=10, prepared_transactions=0,
            data_bytes=int(server.get("data_bytes", 10 << 20)), free_bytes=1 << 40,
        )  # fmt: skip

    def enable_logical_decoding(self, spec: ServerSpec) -> str:
        self._check("enable_logical_decoding")
        self.servers[spec.server_id]["wal_level"] = "logical"
        return "wal_level is logical"

    def provision_logical_copy(self, spec: ServerSpec, source_server_id: str) -> str:
        self._check("provision_logical_copy")
        self._running_source(source_server_id)
        self.servers.setdefault(spec.server_id, {"spec": spec, "copy_of": source_server_id})["running"] = True
        return "copied the roles and schema"

    def subscribe(self, server_id: str, source_server_id: str) -> str:
        self._check("subscribe")
        self.servers[server_id]["subscribed_to"] = source_server_id
        return "subscribed"

    def subscription_progress(self, server_id: str, source_server_id: str) -> SubscriptionProgress:
        self._check("subscription_progress")
        self._running_source(source_server_id)
        wal = int(self.servers[source_server_id].get("wal", 0))
        return SubscriptionProgress(
            tables_total=2, tables_ready=2, confirmed_position=wal, lag_bytes=0, errors=[]
        )

    def checkpoint(self, server_id: str) -> str:
        return "checkpoint"

    def copy_sequences(self, server_id: str, source_server_id: str) -> str:
        self._check("copy_sequences")
        return "sequences set"

    def schema_differences(self, server_id: str, source_server_id: str) -> list[str]:
        return list(self.servers[source_server_id].get("schema_differences", []))

    def unsubscribe(self, server_id: str, source_server_id: str) -> str:
        self.servers.get(server_id, {}).pop("subscribed_to", None)
        return "unsubscribed"

    def rename_server(self, server_id: str, new_server_id: str) -> str:
        from pgfleet.core.errors import EngineError

        self._check("rename_server")
        if server_id not in self.servers:
            if new_server_id in self.servers:
                return "renamed already"
            raise EngineError(f"server {server_id} does not exist")
        if new_server_id in self.servers or self.servers[server_id]["running"]:
            raise EngineError(f"cannot rename {server_id}")
        server = self.servers.pop(server_id)
        server["spec"] = dataclasses.replace(server["spec"], server_id=new_server_id)
        self.servers[new_server_id] = server
        return f"renamed {new_server_id}"

    def server_major_version(self, server_id: str) -> str | None:
        server = self.servers.get(server_id)
        return server["spec"].version if server else None


class FakeClusterEngine(ClusterEngine):
    """Patroni in memory: the first running node of a cluster is its leader unless a
    switchover chose another."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, dict[str, Any]]] = {}
        self.leader: dict[str, str] = {}
        self.databases: dict[str, tuple[str, str]] = {}
        self.admins: dict[str, FakeDatabaseAdmin] = {}
        self.blocked: dict[str, list[str]] = {}  # cluster id -> client addresses refused on every node
        self.limits: dict[str, tuple[int, float]] = {}
        self.restarts: list[tuple[str, str]] = []  # (cluster id, node id) in restart order
        self.reconfigured: list[ClusterSpec] = []
        self.dcs_healthy = True  # tests stop the DCS by setting it False
        self.replayed: dict[str, int] = {}  # cluster id -> WAL position its leader replayed
        self.promoted: list[str] = []  # standby clusters promoted, in order
        self.upstreams: dict[str, Any] = {}  # cluster id -> the Upstream it was provisioned to follow
        self.forwarded: dict[int, str] = {}  # port -> the cluster whose primary it forwards to

    def supported_versions(self) -> list[str]:
        return ["15", "18"]

    def dcs_status(self, timeout: float = 2.0) -> DcsStatus:
        if self.dcs_healthy:
            return DcsStatus("etcd", "http://127.0.0.1:0", True, "etcd is healthy (fake)")
        return DcsStatus("etcd", "http://127.0.0.1:0", False, "etcd is not reachable (fake)")

    def provision_node(self, spec: ClusterSpec, node: NodeSpec) -> str:
        self.upstreams[spec.cluster_id] = spec.standby_of
        self.nodes.setdefault(spec.cluster_id, {}).setdefault(
            node.node_id, {"running": False, "port": node.port}
        )
        return "provisioned"

    def start_node(self, spec: ClusterSpec, node: NodeSpec) -> str:
        self.nodes[spec.cluster_id][node.node_id]["running"] = True
        running = [n for n, v in self.nodes[spec.cluster_id].items() if v["running"]]
        if self.leader.get(spec.cluster_id) not in running:
            self.leader[spec.cluster_id] = running[0]
        return "started"

    def stop_node(self, cluster_id: str, node_id: str) -> str:
        self.nodes.get(cluster_id, {}).get(node_id, {})["running"] = False
        return "stopped"

    def remove_node(self, cluster_id: str, node_id: str) -> str:
        self.nodes.get(cluster_id, {}).pop(node_id, None)
        return "removed"

    def destroy(self, cluster_id: str) -> str:
        self.nodes.pop(cluster_id, None)
        return "destroyed"

    def wait_until_healthy(self, spec: ClusterSpec, timeout: float = 60) -> str:
        return "healthy"

    def members(self, cluster_id: str) -> list[NodeState]:
        """A node's "state", "timeline" and "lag_bytes" may be set in `nodes` to play a
        replica that is still starting, on an older timeline, or behind."""
        leader = self.leader.get(cluster_id)
        return [
            NodeState(
                n,
                "primary" if n == leader else "replica",
                "running" if n == leader else v.get("state", "streaming"),
                "127.0.0.1",
                v["port"],
                1 if n == leader else v.get("timeline", 1),
                None if n == leader else v.get("lag_bytes", 0),
                v["running"],
            )  # fmt: skip
            for n, v in self.nodes.get(cluster_id, {}).items()
        ]

    def switchover(self, cluster_id: str, candidate: str) -> str:
        self.leader[cluster_id] = candidate
        return f"{candidate} is the primary"

    def replication_credentials(self, cluster_id: str) -> tuple[str, str]:
        return "replicator", f"repl-secret-{cluster_id}"

    def replay_position(self, cluster_id: str) -> int | None:
        """`replayed` of the cluster (0 unless a test sets it); None without a running leader."""
        if not any(v["running"] for v in self.nodes.get(cluster_id, {}).values()):
            return None
        return self.replayed.get(cluster_id, 0)

    def promote_standby_cluster(self, cluster_id: str) -> str:
        self.promoted.append(cluster_id)
        return f"promoted {self.leader.get(cluster_id)}"

    def set_replication_mode(self, spec: ClusterSpec) -> str:
        return "set"

    def replication_status(self, cluster_id: str) -> ReplicationStatus:
        leader = self.leader.get(cluster_id)
        return ReplicationStatus(
            leader,
            [
                ReplicaStatus(n, 0, 0.0, "streaming", True)
                for n in self.nodes.get(cluster_id, {})
                if n != leader
            ],
        )

    def ensure_database(self, cluster_id: str, database: str, username: str, password: str) -> str:
        self.databases[cluster_id] = (database, username)
        return "database ready"

    def node_stats(self, cluster_id: str, node_id: str, database: str) -> ServerStats:
        return ServerStats(1, 0, 1, 100, 8_000_000, 12.5, 10, 0, 0.99, 0, datetime.now(UTC))

    def node_logs(
        self, cluster_id: str, node_id: str, limit: int, since: datetime | None = None
    ) -> list[LogLine]:
        return [LogLine(datetime.now(UTC), "LOG", f"{node_id} ready")]

    def set_blocked_sources(self, cluster_id: str, addresses: list[str]) -> str:
        self.blocked[cluster_id] = sorted(set(addresses))
        return f"refused on every node: {', '.join(self.blocked[cluster_id]) or 'none'}"

    def reconfigure(self, spec: ClusterSpec) -> str:
        self.reconfigured.append(spec)
        return "reconfigured"

    def restart_node(self, spec: ClusterSpec, node_id: str, timeout: float = 120) -> str:
        self.restarts.append((spec.cluster_id, node_id))
        return f"restarted {node_id}"

    def apply_resources(self, spec: ClusterSpec) -> str:
        self.limits[spec.cluster_id] = (spec.memory_mb, spec.cpu)
        return f"memory {spec.memory_mb} MB and {spec.cpu:g} CPU enforced (fake)"

    def release_resources(self, cluster_id: str) -> str:
        self.limits.pop(cluster_id, None)
        return "released"

    def database_admin(self, cluster_id: str) -> DatabaseAdmin:
        from pgfleet.core.errors import EngineError

        if not any(v["running"] for v in self.nodes.get(cluster_id, {}).values()):
            raise EngineError(f"cluster {cluster_id} has no running primary")
        return self.admins.setdefault(cluster_id, FakeDatabaseAdmin())

    # forwarded endpoints: port -> cluster id
    def forward_endpoint(self, spec: ClusterSpec, port: int) -> str:
        owner = self.forwarded.get(port)
        if owner is not None and owner != spec.cluster_id:
            from pgfleet.core.errors import EngineError

            raise EngineError(f"port {port} already forwards to cluster {owner}")
        self.forwarded[port] = spec.cluster_id
        return f"port {port} forwards to {self.leader.get(spec.cluster_id)}"

    def stop_forwarding(self, cluster_id: str, port: int) -> str:
        if self.forwarded.get(port) == cluster_id:
            del self.forwarded[port]
        return f"port {port} no longer forwarded"

    def forwarded_to(self, cluster_id: str, port: int) -> str | None:
        return self.leader.get(cluster_id) if self.forwarded.get(port) == cluster_id else None


class FakePooler(Pooler):
    """Poolers in memory: `specs` what each was configured with, `running` which run."""

    def __init__(self) -> None:
        self.specs: dict[str, PoolerSpec] = {}
        self.running: set[str] = set()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def configure(self, spec: PoolerSpec) -> str:
        same = self.specs.get(spec.server_id) == spec and spec.server_id in self.running
        self.specs[spec.server_id] = spec
        self.running.add(spec.server_id)
        return "already runs" if same else f"pooler on {spec.port} started"

    def start(self, server_id: str) -> str:
        self.running.add(server_id)
        return "started"

    def stop(self, server_id: str, remove: bool = False) -> str:
        self.running.discard(server_id)
        if remove:
            self.specs.pop(server_id, None)
        return "stopped"

    def state(self, server_id: str) -> PoolerState:
        spec = self.specs.get(server_id)
        running = server_id in self.running
        return PoolerState(spec is not None, running, 1 if running else None, spec.port if spec else None,
                           "running" if running else "not running")  # fmt: skip

    def server_ids(self) -> list[str]:
        return sorted(self.specs)


class FakeEventPush(EventPush):
    """What was pushed to which connection; a connection in `gone` is reported gone."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, dict[str, Any]]] = []
        self.closed: list[str] = []
        self.gone: set[str] = set()

    def post(self, connection_id: str, data: bytes) -> bool:
        if connection_id in self.gone:
            return False
        self.posted.append((connection_id, json.loads(data)))
        return True

    def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)


class FakeObjectStore(ObjectStore):
    """Objects in a dict; a link is a fake:// URL naming the key (tests read `objects`)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self.objects[key] = (bytes(body), content_type)

    def get(self, key: str) -> bytes | None:
        found = self.objects.get(key)
        return found[0] if found else None

    def link(self, key: str, expires_seconds: int = DEFAULT_LINK_SECONDS, filename: str | None = None) -> str:
        return f"fake://objects/{key}?expires={expires_seconds}"


class FakePorts:
    def __init__(self, home: Path) -> None:
        self.settings = Settings(
            home=home, aws_port=0, etcd_port=0, etcd_peer_port=0, api_port=0, aws_endpoint_url=None, region="us-east-1", table_name="t",
            queue_name="q", schedule_group="g", engine="fake", auth_mode="local", jwt_issuer=None,
            jwks_url=None, jwt_audience=None, scheduled_function_arn="arn", scheduler_role_arn="arn",
        )  # fmt: skip
        self.store = FakeStore()
        self.queue = FakeQueue()
        self.secrets = FakeSecrets()
        self.scheduler = FakeScheduler()
        self.history = FakeHistoryStore()
        self.rate_counter = FakeRateCounter()
        self.engine = FakeEngine()
        self.cluster_engine = FakeClusterEngine()
        # backups (tests/unit/backup_fakes.py)
        self.backup_engine = FakeBackupEngine()
        self.restore_host = FakeRestoreHost()
        self.sql: Any = None  # no server to run SQL in; integration tests use LocalSqlTarget
        self.pooler = FakePooler()
        self.events = FakeEventPush()
        self.objects = FakeObjectStore()

    def drain(self) -> None:
        """Run every queued message (operations, notification deliveries), as the worker would."""
        from pgfleet.core import operations
        from pgfleet.handlers import domains

        handlers = domains.message_handlers()
        while self.queue.messages:
            message = self.queue.messages.pop(0)
            if "operation_id" in message:
                operations.run(self, message["operation_id"])  # type: ignore[arg-type]
            else:
                handlers[message["type"]](self, message)  # type: ignore[arg-type]
