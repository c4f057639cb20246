"""The workflows of replicas, run by the worker step by step; every step is idempotent."""

from __future__ import annotations

from typing import Any

from pgfleet.core import port_allocation as ports_allocation
from pgfleet.core import resources
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.domains import instances
from pgfleet.domains.replicas.service import KIND, REPLICA, replicas_of
from pgfleet.ports.engine import replication_slot_name

# --- workflow steps (run by the worker; each idempotent) ---------------------------------


def _record(ctx: StepContext) -> dict[str, Any]:
    return resources.step_record(ctx, REPLICA)


def _provision(ctx: StepContext) -> str:
    record = _record(ctx)
    return ctx.ports.engine.provision_replica(instances.server_spec(record), record["instance_id"])


def _start(ctx: StepContext) -> str:
    return ctx.ports.engine.start(instances.server_spec(_record(ctx)))


def _destroy(ctx: StepContext) -> str:
    return ctx.ports.engine.destroy(ctx.resource_id)


def _drop_slot(ctx: StepContext) -> str:
    record = _record(ctx)
    instance = ctx.ports.store.get(instances.KIND, record["instance_id"])
    if instance is None or instance["status"] == "deleting":
        return "the instance is being deleted, and its slots with it"
    return ctx.ports.engine.drop_replication_slot(instance["id"], replication_slot_name(record["id"]))


def _release(ctx: StepContext) -> str:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is None:
        return "already released"
    ports_allocation.release(ctx.ports, record["endpoint"]["port"], record["id"])
    return f"released port {record['endpoint']['port']}"


_mark_running = resources.mark(REPLICA, "running", "streaming from the instance; read-only connections")
_remove_record = resources.remove_record(REPLICA)
# What removes a replica without its instance's help (replica.delete adds the slot drop).
_TEARDOWN = (("destroy", _destroy), ("release", _release), ("remove_record", _remove_record))


def destroy_all_for_instance(ctx: StepContext) -> str:
    """A step of instance.delete, to run before the instance's server goes: destroys every
    replica of the instance (`ctx.resource_id`), releases its port and removes its record.
    Their slots go with the instance's server. Idempotent."""
    records = replicas_of(ctx.ports, ctx.resource_id)
    for record in records:
        replica_ctx = StepContext(ctx.ports, {**ctx.operation, "resource_id": record["id"]})
        for _, step in _TEARDOWN:
            step(replica_ctx)
    return f"deleted {len(records)} replica(s)" if records else "no replicas"


def rebuild_all_for_instance(ctx: StepContext, version: str) -> str:
    """A step of an instance's major-version upgrade, once its server runs `version`: every
    replica is copied again from it (a physical standby cannot follow across versions), on
    its own endpoint. Idempotent: a replica already at `version` and running is left alone."""
    rebuilt = []
    for record in replicas_of(ctx.ports, ctx.resource_id):
        if record.get("version") == version and ctx.ports.engine.state(record["id"]).running:
            continue
        ctx.ports.engine.destroy(record["id"])
        record = ctx.ports.store.update(KIND, record["id"], {"version": version}, record["revision"])
        spec = instances.server_spec(record)
        ctx.ports.engine.provision_replica(spec, ctx.resource_id)
        ctx.ports.engine.start(spec)
        rebuilt.append(record["id"])
    return (
        f"rebuilt {len(rebuilt)} replica(s) on PostgreSQL {version}" if rebuilt else "no replicas to rebuild"
    )


# Declared in this domain's manifest; the handlers register them.
WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        "replica.create",
        (
            ("provision", _provision),
            ("start", _start),
            ("mark_running", _mark_running),
        ),
        resources.mark_failed(REPLICA),
    ),
    Workflow(
        "replica.delete",
        (_TEARDOWN[0], ("drop_slot", _drop_slot), *_TEARDOWN[1:]),
        resources.mark_failed(REPLICA),
    ),
)
