"""The workflows of a migration. Their resource is the cluster being built (so the cluster's
own steps run unchanged); `params` name the migration and its source. Every step is idempotent."""

from __future__ import annotations

import time
from typing import Any

from pgfleet.core import resources
from pgfleet.core.errors import EngineError, NotFound
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext, StepFn, Workflow
from pgfleet.domains import archive, clusters, instances
from pgfleet.domains.migrations.service import (
    BUILD,
    BUILD_AND_CUT_OVER,
    CUTOVER,
    KIND,
    OLD_ENDPOINT_AFTER,
    READY_LAG_BYTES,
    lag_of,
    slot_of,
)

CATCH_UP_TIMEOUT = 300  # seconds a freshly copied cluster may take to come within READY_LAG_BYTES
REPLAY_TIMEOUT = 60  # seconds the leader may take to replay the source's last WAL (writes refused)
POLL = 0.2


def _migration(ctx: StepContext) -> dict[str, Any]:
    record = ctx.ports.store.get(KIND, ctx.params["migration_id"])
    if record is None:
        raise NotFound(f"migration {ctx.params['migration_id']} no longer exists")
    return record


def _set(ctx: StepContext, **changes: Any) -> dict[str, Any]:
    return ctx.ports.store.update(KIND, ctx.params["migration_id"], {**changes, "updated_at": utcnow_iso()})


def _source(ctx: StepContext) -> str:
    return str(ctx.params["source_id"])


def _prepare_source(ctx: StepContext) -> str:
    """Let the cluster's replication role in on the source, with a slot keeping WAL for it."""
    _set(
        ctx,
        phase="building",
        phase_reason=f"building cluster {ctx.resource_id} as a standby of {_source(ctx)}",
    )
    role, password = ctx.ports.cluster_engine.replication_credentials(ctx.resource_id)
    slot = slot_of(ctx.params["migration_id"])
    return ctx.ports.engine.allow_replication(_source(ctx), role, password, slot)


def _catch_up(ctx: StepContext) -> str:
    """Wait (bounded) until the cluster is within READY_LAG_BYTES of the source."""
    record = _set(ctx, phase="catching_up", phase_reason="the cluster streams from the source; catching up")
    started = time.monotonic()
    lag = None
    while time.monotonic() - started < CATCH_UP_TIMEOUT:
        lag = lag_of(ctx.ports, record)
        if lag is not None and lag <= READY_LAG_BYTES:
            _set(ctx, lag_bytes=lag)
            return f"caught up: {lag} bytes behind the source after {time.monotonic() - started:.1f}s"
        time.sleep(POLL)
    raise EngineError(f"the cluster did not catch up with the source in {CATCH_UP_TIMEOUT}s (lag {lag})")


def _mark_ready(ctx: StepContext) -> str:
    """Manual cutover: the cluster runs as a read-only standby of the source until asked."""
    source = _source(ctx)
    clusters.mark_running_step(
        f"standby cluster of {source}: read-only, follows it until the cutover of migration "
        f"{ctx.params['migration_id']}"
    )(ctx)
    lag = lag_of(ctx.ports, _migration(ctx))
    _set(ctx, phase="ready", lag_bytes=lag, phase_reason=(
        f"the cluster follows {source} ({lag} bytes behind); the source still takes writes: "
        f"POST /api/v1/postgres/migrate/{ctx.params['migration_id']}/cutover to switch"
    ))  # fmt: skip
    return f"ready for the cutover, {lag} bytes behind"


def _refuse_writes(ctx: StepContext) -> str:
    """The source turns read-only and its sessions end: from here on nothing commits there."""
    record = _set(ctx, phase="cutting_over", phase_reason="refusing writes on the source")
    position = ctx.ports.engine.set_read_only(_source(ctx), True)
    refused_at = record.get("writes_refused_at") or utcnow_iso()
    _set(ctx, final_position=position, writes_refused_at=refused_at,
         phase_reason="writes refused on the source; the cluster replays its last WAL")  # fmt: skip
    _note_on_source(ctx, f"read-only since {refused_at}: migrated to cluster {ctx.resource_id}")
    return f"source {_source(ctx)} read-only, its client sessions ended; its last WAL position {position}"


def _wait_replayed(ctx: StepContext) -> str:
    final = int(_migration(ctx)["final_position"])
    started = time.monotonic()
    replayed = None
    while time.monotonic() - started < REPLAY_TIMEOUT:
        replayed = ctx.ports.cluster_engine.replay_position(ctx.resource_id)
        if replayed is not None and replayed >= final:
            # A session that overrode read-only (BEGIN READ WRITE) may have written since the
            # block: the source's position now is the one to reach before promoting.
            now = ctx.ports.engine.wal_position(_source(ctx))
            if now > final:
                final = now
                continue
            _set(ctx, lag_bytes=0, final_position=final)
            return f"the leader replayed the source's last WAL ({final}) in {time.monotonic() - started:.1f}s"
        time.sleep(POLL)
    raise EngineError(f"the cluster did not replay the source's WAL up to {final} in time (at {replayed})")


def _promote(ctx: StepContext) -> str:
    reason = ctx.ports.cluster_engine.promote_standby_cluster(ctx.resource_id)
    ctx.ports.store.update(clusters.KIND, ctx.resource_id, {"standby_of": None})
    _set(ctx, promoted=True, phase_reason="the cluster is promoted and takes writes")
    # The source keeps no WAL for a cluster that no longer follows it.
    slot = ctx.ports.engine.drop_replication_slot(_source(ctx), slot_of(ctx.params["migration_id"]))
    return f"{reason}; source: {slot}"


def _complete(ctx: StepContext) -> str:
    cluster = resources.step_record(ctx, clusters.CLUSTER)
    creds = clusters.credentials(cluster, "")
    # Without the password: it is the source's, which the user has.
    target = {k: creds[k].replace(":@", "@", 1) for k in ("uri", "read_only_uri")}
    record = _migration(ctx)
    refused = record.get("writes_refused_at")
    _set(ctx, phase="completed", completed_at=utcnow_iso(), target=target, old_endpoint=OLD_ENDPOINT_AFTER,
         phase_reason=f"cut over to cluster {ctx.resource_id} (primary {cluster.get('primary')}); the source "
         f"refuses writes since {refused} and is kept until you delete it")  # fmt: skip
    return f"completed: connect to {target['uri']}"


def _note_on_source(ctx: StepContext, reason: str) -> None:
    if ctx.ports.store.get(instances.KIND, _source(ctx)) is not None:
        ctx.ports.store.update(
            instances.KIND, _source(ctx), {"status_reason": reason, "updated_at": utcnow_iso()}
        )


def _failed(ctx: StepContext, error: str) -> None:
    """The migration failed: say so. Before the promotion the source is given its writes back
    (it stays the primary of the data) and the cluster is left failed for the user to delete."""
    record = ctx.ports.store.get(KIND, ctx.params["migration_id"])
    if record is None:
        return
    notes = [error]
    if record.get("writes_refused_at") and not record.get("promoted"):
        try:
            ctx.ports.engine.set_read_only(_source(ctx), False)
            notes.append(f"the source {_source(ctx)} takes writes again")
            _note_on_source(ctx, f"migration {record['id']} failed; takes writes again")
        except EngineError as exc:
            notes.append(f"the source could not be made writable again: {exc}")
    _set(ctx, phase="failed", phase_reason="; ".join(notes))
    resources.mark_failed(clusters.CLUSTER)(ctx, f"migration {record['id']} failed: {error}")


_BUILD: tuple[tuple[str, StepFn], ...] = (
    ("configure_archiving", archive.service.configure_step(clusters.CLUSTER)),
    ("prepare_source", _prepare_source),
    ("provision", clusters.provision_step),
    ("start_nodes", clusters.start_nodes_step),
    ("wait_healthy", clusters.wait_healthy_step),
    ("catch_up", _catch_up),
)
_CUTOVER: tuple[tuple[str, StepFn], ...] = (
    ("refuse_writes", _refuse_writes),
    ("wait_replayed", _wait_replayed),
    ("promote", _promote),
    ("create_database", clusters.create_database_step),
    ("mark_running", clusters.mark_created_step),
    ("complete", _complete),
)

WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(BUILD, (*_BUILD, ("mark_ready", _mark_ready)), _failed),
    Workflow(BUILD_AND_CUT_OVER, (*_BUILD, *_CUTOVER), _failed),
    Workflow(CUTOVER, _CUTOVER, _failed),
)
