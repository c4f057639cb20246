"""Read replicas of single instances: streaming standbys, each with its own read-only endpoint.

A replica is a record of kind "replica" whose parent is its instance and whose tenant is the
instance's. The engine copies the running instance into the replica's server, which then
streams WAL through a replication slot named after the replica (`replication_slot_name`) and
serves the instance's roles and data read-only on its own port: clients use the instance's
credentials. Deleting an instance deletes its replicas first (`destroy_all_for_instance`).
"""

from __future__ import annotations

import logging
from typing import Any

from pgfleet.core import admission, operations, resources
from pgfleet.core import port_allocation as ports_allocation
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, Conflict, EngineError, NotFound, PgfleetError
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.core.resources import ResourceType, Transition
from pgfleet.domains import instances
from pgfleet.domains.replicas.models import MAX_REPLICAS, ReplicaCreate
from pgfleet.ports.engine import ReplicaLag, replication_slot_name
from pgfleet.ports.metadata import Create

log = logging.getLogger(__name__)

REPLICA = ResourceType(
    kind="replica",
    public_fields=(
        "id",
        "instance_id",
        "name",
        "tenant_id",
        "status",
        "status_reason",
        "cpu",
        "memory",
        "endpoint",
        "created_at",
        "updated_at",
        "operation_id",
    ),  # fmt: skip
    transitions={
        "delete": Transition(("running", "failed"), "deleting", "deleted", "replica.delete"),
    },
)
KIND = REPLICA.kind
TRANSITIONAL = ("creating", "deleting")


def public_view(record: dict[str, Any], lag: ReplicaLag | None = None) -> dict[str, Any]:
    """The replica as the API shows it; with its replication state when `lag` is given."""
    view = resources.public_view(REPLICA, record)
    if lag is not None:
        view.update(state=lag.state, lag_bytes=lag.lag_bytes, lag_seconds=lag.lag_seconds)
    return view


def replicas_of(ports: Ports, instance_id: str) -> list[dict[str, Any]]:
    """Every replica record of an instance, oldest first."""
    # An instance has at most MAX_REPLICAS replicas (a few more while creates race): one page.
    records, _ = ports.store.list(KIND, parent_id=instance_id, limit=100)
    return records


def get_visible(
    ports: Ports, principal: Principal, instance: dict[str, Any], replica_id: str
) -> dict[str, Any]:
    """The replica, if it belongs to `instance` (which the caller sees); else NotFound."""
    record = resources.get_visible(ports, principal, REPLICA, replica_id)
    if record["instance_id"] != instance["id"]:
        raise NotFound(f"replica {replica_id} not found")
    return record


# --- API --------------------------------------------------------------------------------------


def create(
    ports: Ports,
    principal: Principal,
    instance_id: str,
    body: ReplicaCreate,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Accept a request for `body.replica_count` replicas of a running instance; the worker
    builds each with its own operation. Returns the replicas and their operation ids."""
    instance = instances.get_visible(ports, principal, instance_id)
    tenant = instance["tenant_id"]
    # The same key and body on another instance is another request.
    body_fingerprint = f"{instance_id}:{resources.fingerprint(body)}"
    earlier = resources.replayed_create(ports, REPLICA, tenant, idempotency_key, body_fingerprint)
    if earlier is not None:
        return _created_view(
            [r for r in replicas_of(ports, instance_id) if r.get("batch") == earlier["batch"]]
        )
    resources.require_status(instance, instances.INSTANCE, "add replicas to", ("running",))
    existing = replicas_of(ports, instance_id)
    if len(existing) + body.replica_count > MAX_REPLICAS:
        raise Conflict(
            f"an instance has at most {MAX_REPLICAS} replicas; it has {len(existing)}",
            details={"replicas": len(existing), "max_replicas": MAX_REPLICAS},
        )
    # A replica holds the instance's storage (a full copy) and its own memory and CPU.
    admission.admit(
        ports,
        tenant,
        admission.Demand.servers(
            body.replica_count, cpu=body.cpu, memory_mb=body.memory, storage_gb=instance["storage"],
            instance=False,
        ),
        f"{body.replica_count} replica(s) of instance {instance['name']}",
    )  # fmt: skip
    # Listings order by (created_at, id): sorted ids keep replicas created within one
    # millisecond in creation (and name) order.
    ids = sorted(new_id("pgr") for _ in range(body.replica_count))
    created = [_create_one(ports, principal, instance, body, replica_id, ids[0]) for replica_id in ids]
    resources.remember_create(ports, REPLICA, tenant, idempotency_key, ids[0], body_fingerprint)
    return _created_view(created)


def list_for_instance(ports: Ports, principal: Principal, instance_id: str) -> dict[str, Any]:
    """The instance's replicas with their replication state and lag, read live from the
    instance (left out when the instance cannot say)."""
    instance = instances.get_visible(ports, principal, instance_id)
    lags = _lags_by_slot(ports, instance)
    return {
        "replicas": [
            public_view(r, lags.get(replication_slot_name(r["id"]))) for r in replicas_of(ports, instance_id)
        ]
    }


def delete(ports: Ports, principal: Principal, instance_id: str, replica_id: str) -> dict[str, Any]:
    """Hand the replica's deletion to the worker. The instance must run: its slot for the
    replica is dropped there, or it would keep WAL for the replica forever."""
    instance = instances.get_visible(ports, principal, instance_id)
    get_visible(ports, principal, instance, replica_id)
    resources.require_status(instance, instances.INSTANCE, "delete replicas of", ("running",))
    return public_view(resources.transition(ports, principal, REPLICA, replica_id, "delete"))


def _create_one(
    ports: Ports,
    principal: Principal,
    instance: dict[str, Any],
    body: ReplicaCreate,
    replica_id: str,
    batch: str,
) -> dict[str, Any]:
    (port,) = ports_allocation.reserve(ports, replica_id)
    now = utcnow_iso()
    op = operations.new_operation("replica.create", replica_id, instance["tenant_id"])
    record = {
        "id": replica_id,
        "tenant_id": instance["tenant_id"],
        "parent_id": instance["id"],
        "instance_id": instance["id"],
        "batch": batch,  # the first replica of the request: what an Idempotency-Key replays
        "status": "creating",
        "status_reason": "accepted; waiting for the worker",
        "desired_state": "running",
        # What instances.server_spec needs: a replica runs the instance's version and settings.
        "version": instance["version"],
        "storage": instance["storage"],
        "settings": instance.get("settings", {}),
        "cpu": body.cpu,
        "memory": body.memory,
        "endpoint": {"host": ports.engine.host, "port": port},
        "created_at": now,
        "updated_at": now,
        "operation_id": op["id"],
        "created_by": principal.sub,
    }
    try:
        return _store_with_free_name(ports, record, instance, op)
    except Exception:
        if ports.store.get(KIND, replica_id) is None:
            ports_allocation.release(ports, port, replica_id)
        raise


def _store_with_free_name(
    ports: Ports, record: dict[str, Any], instance: dict[str, Any], op: dict[str, Any]
) -> dict[str, Any]:
    """Store the record as "<instance name>-replica-N" with the lowest N no replica of the
    instance uses (instance names are unique per tenant, so these names are too), in one
    transaction with its operation `op`."""
    taken = {r["name"] for r in replicas_of(ports, instance["id"])}
    for number in range(1, 10 * MAX_REPLICAS):
        name = f"{instance['name']}-replica-{number}"
        if name in taken:
            continue
        key = resources.name_key(REPLICA, record["tenant_id"], name)
        try:
            return operations.submit_with(ports, Create(KIND, {**record, "name": name}, (key,)), op)
        except AlreadyExists:
            continue  # a concurrent request took this name: try the next one
    raise Conflict(f"no free replica name left for instance {instance['id']}")


def _created_view(records: list[dict[str, Any]]) -> dict[str, Any]:
    # In listing order, so that a replayed request answers exactly as the first one did.
    records = sorted(records, key=lambda r: (r["created_at"], r["id"]))
    return {
        "replicas": [public_view(r) for r in records],
        "operation_ids": [r["operation_id"] for r in records],
    }


def _lags_by_slot(ports: Ports, instance: dict[str, Any]) -> dict[str, ReplicaLag]:
    if instance["status"] != "running":
        return {}
    try:
        lags = ports.engine.replica_status(instance["id"])
    except EngineError as exc:
        # The listing still answers; the replicas simply show no replication state.
        log.warning("replica_status of %s failed: %s", instance["id"], exc)
        return {}
    return {lag.slot: lag for lag in lags if lag.slot}


# --- reconcile --------------------------------------------------------------------------------


def reconcile(ports: Ports) -> list[str]:
    """Bring every replica back to its desired state, saying why: a replica whose server
    died while it should run is started again; an unfinished operation nobody works on is
    handed to the worker again; a replica stranded in a transitional status with no
    operation is marked failed (delete accepts it). Returns one line per action."""

    actions = []
    for record in resources.all_records(ports, KIND):
        try:
            line = _reconcile_one(ports, record)
        except PgfleetError as exc:
            line = f"{record['id']}: could not reconcile: {exc}"
        if line:
            actions.append(line)
    return actions


def _reconcile_one(ports: Ports, record: dict[str, Any]) -> str | None:
    if record["status"] in TRANSITIONAL:
        return resources.fail_if_stranded(ports, KIND, record) or operations.resume_if_stale(ports, record)
    if record["status"] != "running" or record.get("desired_state", "running") != "running":
        return None
    state = ports.engine.state(record["id"])
    if state.running:
        return None
    ports.engine.start(instances.server_spec(record))
    reason = (
        f"reconcile at {utcnow_iso()}: server was not running ({state.reason or 'no postmaster'}); started it"
    )
    ports.store.update(KIND, record["id"], {"status_reason": reason, "updated_at": utcnow_iso()})
    return f"{record['id']}: {reason}"
