"""Migrations of a single instance into a Patroni cluster (UC8).

The cluster is built as a Patroni standby cluster of the instance: its leader copies the
instance with pg_basebackup and streams from a slot on it, its other nodes follow the leader.
The app's role, password and database come with the physical copy. At the cutover the source
stops taking writes (read-only, its client sessions ended), the cluster replays the source's
last WAL, the source is stopped (its data kept until the user deletes it), the standby cluster
is promoted, and the source's host:port is forwarded to the cluster's current primary
(HAProxy following Patroni's leader locally), so clients keep their connection string.

One migration per source at a time: a claim on the source, held until the migration fails or
the source is deleted.

The record (kind "migration") holds the phase, the last lag seen and the operations; the
operations run on the cluster (their resource), so the cluster's own steps are reused as is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, NotFound
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains import clusters, instances
from pgfleet.domains.migrations import dependents
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
    "writes_refused_at", "completed_at", "target", "old_endpoint", "moved", "not_moved", "created_at",
    "updated_at",
)  # fmt: skip
FOLLOWING = ("catching_up", "ready")
OLD_ENDPOINT_BEFORE = "read-write: the source serves the application until the cutover"
OLD_ENDPOINT_AFTER = (
    "forwarded: the source is stopped (its data kept until you delete it) and its host:port forwards to "
    "the cluster's current primary, following switchovers and failovers; target.uri reaches it directly"
)


def slot_of(migration_id: str) -> str:
    """The slot on the source that keeps WAL for the cluster's leader."""
    return replication_slot_name(migration_id)


def source_claim(source_id: str) -> str:
    """The claim that lets one migration at a time work on a source."""
    return f"migration-source#{source_id}"


def create(ports: Ports, principal: Principal, body: MigrationCreate) -> dict[str, Any]:
    """Accept a migration: the record, then the cluster (a standby of the source) and the
    operation that builds it."""
    source = instances.get_visible(ports, principal, body.source_id)
    if source.get("migrated_to"):
        raise InvalidState(
            f"instance {source['id']} was migrated to cluster {source['migrated_to']} already; its endpoint "
            "forwards there"
        )
    if source["status"] != "running":
        raise InvalidState(
            f"instance {source['id']} is {source['status']}; only a running instance can be migrated"
        )
    password = ports.secrets.get(instances.secret_name(source))
    if not password:
        raise InvalidState(f"the password of instance {source['id']} is missing from the secret store")
    migration_id = new_id("mig")
    if not ports.store.claim(source_claim(source["id"]), migration_id):
        holder = (ports.store.claimed(source_claim(source["id"])) or {}).get("owner")
        raise InvalidState(
            f"instance {source['id']} is being migrated already (migration {holder}); one migration at a time",
            details={"migration_id": holder},
        )
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
        "moved": dependents.to_move(ports, source),
        "not_moved": dependents.not_moved(ports, source),
        "created_at": now,
        "updated_at": now,
        "created_by": principal.sub,
    }
    try:
        ports.store.create(KIND, record)
    except Exception:
        ports.store.release(source_claim(source["id"]), migration_id)
        raise
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
        ports.store.release(source_claim(source["id"]), migration_id)
        raise
    stored = ports.store.update(
        KIND, migration_id, {"cluster_id": cluster["id"], "operation_id": cluster["operation_id"]}
    )
    # The instance's lifecycle knows a migration works on it (instances.transition refuses a
    # stop or restart that would break it).
    ports.store.update(instances.KIND, source["id"], {"migration_id": migration_id, "updated_at": now})
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
    shown["moved"] = shown["moved"] or []
    if record["phase"] in FOLLOWING:
        shown["lag_bytes"] = lag_of(ports, record)
    if record["phase"] == "completed" and record.get("forwarded_port"):
        node = ports.cluster_engine.forwarded_to(record["cluster_id"], record["forwarded_port"])
        shown["old_endpoint"] = (
            f"{OLD_ENDPOINT_AFTER} (now {node})" if node else
            "not forwarded right now (the cluster has no primary passing its check, or the forwarding is "
            "down; reconcile restarts it): connect to target.uri"
        )  # fmt: skip
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


def of_source(ports: Ports, source_id: str) -> list[dict[str, Any]]:
    records, _ = ports.store.list(KIND, parent_id=source_id, limit=100)
    return records


def reconcile(ports: Ports) -> list[str]:
    """Keep the old endpoint of every completed migration forwarding to its cluster's primary
    (after `pgfleet down`/`up`, a killed proxy, or nodes added or removed). Returns one line
    per action."""
    actions = []
    for record in resources.all_records(ports, KIND):
        port = record.get("forwarded_port")
        if record["phase"] != "completed" or not port:
            continue
        cluster = ports.store.get(clusters.KIND, record["cluster_id"])
        if cluster is None or cluster["status"] != "running":
            continue  # a stopped or paused cluster has no primary to forward to
        try:
            reason = ports.cluster_engine.forward_endpoint(clusters.cluster_spec(cluster), int(port))
        except EngineError as exc:
            actions.append(f"{record['id']}: the old endpoint does not forward: {exc}")
            continue
        if "already forwards" not in reason:
            ports.store.update(KIND, record["id"], {"phase_reason": f"reconcile at {utcnow_iso()}: {reason}",
                                                    "updated_at": utcnow_iso()})  # fmt: skip
            actions.append(f"{record['id']}: {reason}")
    return actions


def forget_source(ctx: operations.StepContext) -> str:
    """Cascade of an instance's delete: its old endpoint stops forwarding (the port is
    released with the instance) and its migration records go."""
    notes = []
    for record in of_source(ctx.ports, ctx.resource_id):
        if record.get("forwarded_port") and record.get("cluster_id"):
            notes.append(
                ctx.ports.cluster_engine.stop_forwarding(record["cluster_id"], int(record["forwarded_port"]))
            )
        ctx.ports.store.delete(KIND, record["id"])
        notes.append(f"migration {record['id']} removed")
    ctx.ports.store.release(source_claim(ctx.resource_id))
    return "; ".join(notes) or "no migration"


def forget_cluster(ctx: operations.StepContext) -> str:
    """Cascade of a cluster's delete: the old endpoint of a migration into it stops
    forwarding, and its source (stopped, its port free again) may be started again."""
    notes = []
    for record in resources.all_records(ctx.ports, KIND):
        if record.get("cluster_id") != ctx.resource_id:
            continue
        if record.get("forwarded_port"):
            notes.append(
                ctx.ports.cluster_engine.stop_forwarding(ctx.resource_id, int(record["forwarded_port"]))
            )
        now = utcnow_iso()
        ctx.ports.store.update(KIND, record["id"], {
            "forwarded_port": None, "updated_at": now,
            "old_endpoint": f"released: cluster {ctx.resource_id} was deleted; the source can be started again",
        })  # fmt: skip
        source = ctx.ports.store.get(instances.KIND, record["source_id"])
        if source is not None and source.get("migrated_to") == ctx.resource_id:
            ctx.ports.store.update(instances.KIND, source["id"], {
                "migrated_to": None, "migration_id": None, "updated_at": now,
                "status_reason": f"{source['status']}; cluster {ctx.resource_id} it was migrated to was deleted: "
                "its endpoint is free again (start it to serve its data as of the cutover, read-only)",
            })  # fmt: skip
        ctx.ports.store.release(source_claim(record["source_id"]), record["id"])
        notes.append(f"migration {record['id']}: old endpoint released")
    return "; ".join(notes) or "no migration into it"
