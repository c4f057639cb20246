"""Migrations of a single instance into a Patroni cluster (UC8).

The cluster is built as a Patroni standby cluster of the instance: its leader copies the
instance with pg_basebackup and streams from a slot on it, its other nodes follow the leader.
The app's role, password and database come with the physical copy. At the cutover the source
stops taking writes (read-only, its client sessions ended), the cluster replays the source's
last WAL, and the standby cluster is promoted. The source is kept, read-only, until the user
deletes it.

The record (kind "migration") holds the phase, the last lag seen and the operations; the
operations run on the cluster (their resource), so the cluster's own steps are reused as is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pgfleet.core import operations
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, NotFound
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains import clusters, instances
from pgfleet.domains.migrations.models import MigrationCreate
from pgfleet.ports.cluster_engine import HEALTHY_LAG_BYTES
from pgfleet.ports.engine import replication_slot_name
from pgfleet.ports.metadata import Create, Update

KIND = "migration"
BUILD = "migration.build"  # manual cutover: build, catch up, wait for POST .../cutover
BUILD_AND_CUT_OVER = "migration.build_and_cutover"  # automatic cutover
CUTOVER = "migration.cutover"
# A cluster this close behind its source may be cut over: the cutover itself waits for the
# last bytes, with writes refused, so this bounds how long writes are refused.
READY_LAG_BYTES = HEALTHY_LAG_BYTES
PUBLIC_FIELDS = (
    "id", "tenant_id", "source_id", "target_type", "cluster_id", "node_count", "cutover_mode",
    "phase", "phase_reason", "lag_bytes", "operation_id", "cutover_operation_id",
    "writes_refused_at", "completed_at", "target", "old_endpoint", "not_moved", "created_at",
    "updated_at",
)  # fmt: skip
FOLLOWING = ("catching_up", "ready")
OLD_ENDPOINT_BEFORE = "read-write: the source serves the application until the cutover"
OLD_ENDPOINT_AFTER = (
    "read-only: the source refuses writes since the cutover (no proxy forwards its endpoint to the "
    "cluster: connect to target.uri); it is kept until you delete it"
)


def slot_of(migration_id: str) -> str:
    """The slot on the source that keeps WAL for the cluster's leader."""
    return replication_slot_name(migration_id)


def not_moved(ports: Ports, source: dict[str, Any]) -> list[dict[str, str]]:
    """What stays with the source, and why (the data, roles and databases all move)."""
    found = []
    tenants, _ = ports.store.list("tenant", parent_id=source["id"], limit=100)
    if tenants:
        found.append({
            "what": f"tenant records ({len(tenants)}: {', '.join(t['name'] for t in tenants)})",
            "reason": "their databases and roles are copied to the cluster, but the tenant records stay "
            "attached to the source instance; recreate them on the cluster to manage them there",
        })  # fmt: skip
    replicas, _ = ports.store.list("replica", parent_id=source["id"], limit=100)
    if replicas:
        found.append({
            "what": f"read replicas ({', '.join(r['id'] for r in replicas)})",
            "reason": "they follow the source, which turns read-only; the cluster's own replicas serve "
            "reads (read_only_uri)",
        })  # fmt: skip
    if ports.store.get("backup_schedule", source["id"]) is not None:
        found.append({
            "what": "backup schedule",
            "reason": "schedules belong to the source; set the cluster's with PUT .../cluster/{id}/backups/schedule",
        })  # fmt: skip
    found.append({
        "what": "backups",
        "reason": "the source's backups stay restorable from the source while it exists; the cluster starts its "
        "own with a first full backup after the cutover",
    })  # fmt: skip
    if source.get("settings"):
        found.append({
            "what": f"setting overrides ({', '.join(sorted(source['settings']))})",
            "reason": "the cluster is sized from the same cpu and memory; apply overrides to the cluster again",
        })  # fmt: skip
    found.append({
        "what": "quotas",
        "reason": "nothing to move: quotas are per tenant, and the cluster's nodes count against the tenant's",
    })  # fmt: skip
    return found


def create(ports: Ports, principal: Principal, body: MigrationCreate) -> dict[str, Any]:
    """Accept a migration: the record, then the cluster (a standby of the source) and the
    operation that builds it."""
    source = instances.get_visible(ports, principal, body.source_id)
    if source["status"] != "running":
        raise InvalidState(
            f"instance {source['id']} is {source['status']}; only a running instance can be migrated"
        )
    password = ports.secrets.get(instances.secret_name(source))
    if not password:
        raise InvalidState(f"the password of instance {source['id']} is missing from the secret store")
    migration_id = new_id("mig")
    now = utcnow_iso()
    record: dict[str, Any] = {
        "id": migration_id,
        "tenant_id": source["tenant_id"],
        "parent_id": source["id"],
        "source_id": source["id"],
        "target_type": body.target_type,
        "cluster_id": None,
        "node_count": body.node_count,
        "cutover_mode": body.cutover_mode,
        "phase": "building",
        "phase_reason": "accepted; waiting for the worker",
        "lag_bytes": None,
        "operation_id": None,
        "cutover_operation_id": None,
        "writes_refused_at": None,
        "completed_at": None,
        "target": None,
        "old_endpoint": OLD_ENDPOINT_BEFORE,
        "not_moved": not_moved(ports, source),
        "created_at": now,
        "updated_at": now,
        "created_by": principal.sub,
    }
    ports.store.create(KIND, record)
    cluster_body = clusters.ClusterCreate(
        name=source["name"], version=source["version"], cpu=source["cpu"], memory=source["memory"],
        storage=source["storage"], database=source["database"], username=source["username"],
        node_count=body.node_count, replication_mode="async",
    )  # fmt: skip
    # The cluster belongs to the source's tenant, whoever asks (a platform admin may).
    owner = dataclasses.replace(principal, tenant_id=source["tenant_id"])
    try:
        cluster = clusters.create(
            ports, owner, cluster_body,
            workflow=BUILD if body.cutover_mode == "manual" else BUILD_AND_CUT_OVER,
            params={"migration_id": migration_id, "source_id": source["id"]},
            password=password,
            standby_of={**source["endpoint"], "slot": slot_of(migration_id)},
        )  # fmt: skip
    except Exception:
        ports.store.delete(KIND, migration_id)
        raise
    stored = ports.store.update(
        KIND, migration_id, {"cluster_id": cluster["id"], "operation_id": cluster["operation_id"]}
    )
    return {**view(ports, stored), "credentials": cluster["credentials"]}


def get_visible(ports: Ports, principal: Principal, migration_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, migration_id)
    if record is None or not principal.sees_tenant(record["tenant_id"]):
        raise NotFound(f"migration {migration_id} not found")
    return record


def lag_of(ports: Ports, record: dict[str, Any]) -> int | None:
    """WAL bytes of the source the cluster's leader has not replayed; None when unknown."""
    if not record.get("cluster_id"):
        return None
    try:
        written = ports.engine.wal_position(record["source_id"])
    except EngineError:
        return None
    replayed = ports.cluster_engine.replay_position(record["cluster_id"])
    return None if replayed is None else max(0, written - replayed)


def view(ports: Ports, record: dict[str, Any]) -> dict[str, Any]:
    """The record's public fields, the live lag while the cluster follows, and the steps of
    its operations."""
    shown = {k: record.get(k) for k in PUBLIC_FIELDS}
    if record["phase"] in FOLLOWING:
        shown["lag_bytes"] = lag_of(ports, record)
    steps = []
    for key in ("operation_id", "cutover_operation_id"):
        op = ports.store.get(operations.KIND, record[key]) if record.get(key) else None
        if op is None:
            continue
        for step in op["steps"]:
            steps.append({"operation_id": op["id"], "name": step["name"], "status": step["status"],
                          "reason": step.get("reason")})  # fmt: skip
    shown["steps"] = steps
    return shown


def cutover(ports: Ports, principal: Principal, migration_id: str) -> dict[str, Any]:
    """Start the cutover of a ready migration: a 409 with the lag otherwise."""
    record = get_visible(ports, principal, migration_id)
    lag = lag_of(ports, record) if record["phase"] in FOLLOWING else record.get("lag_bytes")
    shown_lag = "unknown" if lag is None else f"{lag} bytes"
    if record["cutover_mode"] == "automatic":
        raise InvalidState(f"migration {migration_id} cuts over automatically (phase {record['phase']})")
    if record["phase"] != "ready":
        raise InvalidState(
            f"migration {migration_id} is not ready for a cutover: it is {record['phase']}"
            f" ({record['phase_reason']}); lag {shown_lag}"
        )
    if lag is None or lag > READY_LAG_BYTES:
        raise InvalidState(
            f"migration {migration_id} is not ready for a cutover: the cluster is {shown_lag} behind"
            f" the source (at most {READY_LAG_BYTES})"
        )
    op = operations.new_operation(
        CUTOVER, record["cluster_id"], record["tenant_id"],
        {"migration_id": migration_id, "source_id": record["source_id"]},
    )  # fmt: skip
    now = utcnow_iso()
    reason = f"cutover requested (operation {op['id']}); lag {lag} bytes"
    # The migration's phase, the cluster's status and the operation at once (see submit_with).
    ports.store.transact([
        Update(KIND, migration_id, {"phase": "cutting_over", "phase_reason": reason,
                                    "cutover_operation_id": op["id"], "updated_at": now}, record["revision"]),
        Update(clusters.KIND, record["cluster_id"], {"status": "promoting", "operation_id": op["id"],
               "status_reason": f"cutover of migration {migration_id}", "updated_at": now}),
        Create(operations.KIND, op),
    ])  # fmt: skip
    ports.queue.send({"operation_id": op["id"]})
    return view(ports, get_visible(ports, principal, migration_id))
