"""The workflows of a migration. Their resource is the cluster being built (so the cluster's
own steps run unchanged); `params` name the migration and its source. Every step is idempotent."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pgfleet.core import resources
from pgfleet.core.errors import EngineError, NotFound
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext, StepFn, Workflow
from pgfleet.domains import archive, clusters, instances
from pgfleet.domains.migrations import dependents
from pgfleet.domains.migrations.service import (
    BUILD,
    BUILD_AND_CUT_OVER,
    CUTOVER,
    KIND,
    OLD_ENDPOINT_AFTER,
    READY_LAG_BYTES,
    lag_of,
    slot_of,
    source_claim,
)

CATCH_UP_TIMEOUT = 300  # seconds a freshly copied cluster may take to come within READY_LAG_BYTES
REPLAY_TIMEOUT = 60  # seconds the leader may take to replay the source's last WAL (writes refused)
POLL = 0.2
REPLAY_POLL = 0.05  # writes are refused meanwhile


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
    settings = dependents.move_settings(ctx.ports, _source(ctx), ctx.resource_id)
    return f"{ctx.ports.engine.allow_replication(_source(ctx), role, password, slot)}; {settings}"


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
    record = _migration(ctx)
    position = ctx.ports.engine.set_read_only(_source(ctx), True)
    refused_at = record.get("writes_refused_at") or utcnow_iso()
    _set(ctx, phase="cutting_over", final_position=position, writes_refused_at=refused_at,
         phase_reason="writes refused on the source; the cluster replays its last WAL")  # fmt: skip
    _note_on_source(ctx, f"read-only since {refused_at}: cutting over to cluster {ctx.resource_id}")
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
        time.sleep(REPLAY_POLL)
    raise EngineError(f"the cluster did not replay the source's WAL up to {final} in time (at {replayed})")


def _switch(ctx: StepContext) -> str:
    """Writes are refused until this step ends, so its parts overlap: the standby cluster
    promotes itself while the source (its slot dropped first) stops, its data kept on disk,
    read-only, until the user deletes it; as soon as the source's port is free it forwards to
    the cluster (the forwarding waits for the new primary to pass its health check). Each
    part is idempotent, so is the step."""
    source = _source(ctx)
    record = ctx.ports.store.get(instances.KIND, source)
    notes = []
    if record is not None and ctx.ports.engine.state(source).running:
        notes.append(ctx.ports.engine.drop_replication_slot(source, slot_of(ctx.params["migration_id"])))
    with ThreadPoolExecutor(1) as pool:
        promoting = pool.submit(ctx.ports.cluster_engine.promote_standby_cluster, ctx.resource_id)
        failure: Exception | None = None
        forwarded = None
        try:
            notes.append(_stop_source(ctx, record))
            forwarded = _forward_endpoint(ctx, record)
        except Exception as exc:  # the promotion's outcome decides what a failure undoes
            failure = exc
        promoted = promoting.result()
    ctx.ports.store.update(clusters.KIND, ctx.resource_id, {"standby_of": None})
    _set(ctx, promoted=True, phase_reason="the cluster is promoted and takes writes")
    if failure is not None:
        raise failure
    return f"{promoted}; source {source}: {'; '.join(notes)}; {forwarded}"


def _stop_source(ctx: StepContext, record: dict[str, Any] | None) -> str:
    source = _source(ctx)
    stopped = ctx.ports.engine.stop(source)
    released = ctx.ports.engine.release_resources(source)
    _set(ctx, source_stopped=True)
    if record is not None:
        ctx.ports.store.update(instances.KIND, source, {
            "status": "stopped", "desired_state": "stopped", "migrated_to": ctx.resource_id, "updated_at": utcnow_iso(),
            "status_reason": f"stopped since {_migration(ctx).get('writes_refused_at')}: migrated to cluster "
            f"{ctx.resource_id}; its endpoint forwards to the cluster's primary; its data is kept until you delete it",
        })  # fmt: skip
    return f"{stopped}; {released}"


def _forward_endpoint(ctx: StepContext, source: dict[str, Any] | None) -> str:
    """The source's host:port reaches the cluster's primary from now on."""
    if source is None:
        return f"the source {_source(ctx)} was deleted: nothing to forward"
    cluster = resources.step_record(ctx, clusters.CLUSTER)
    port = int(source["endpoint"]["port"])
    reason = ctx.ports.cluster_engine.forward_endpoint(clusters.cluster_spec(cluster), port)
    _set(ctx, forwarded_port=port, phase_reason=f"the old endpoint forwards to the cluster: {reason}")
    return reason


def _move_dependents(ctx: StepContext) -> str:
    done = dependents.move(ctx.ports, _source(ctx), ctx.resource_id)
    return "; ".join(done) or "no tenant, quota or backup schedule to move"


def _complete(ctx: StepContext) -> str:
    cluster = resources.step_record(ctx, clusters.CLUSTER)
    creds = clusters.credentials(cluster, "")
    # Without the password: it is the source's, which the user has.
    target = {k: creds[k].replace(":@", "@", 1) for k in ("uri", "read_only_uri")}
    record = _migration(ctx)
    refused = record.get("writes_refused_at")
    _set(ctx, phase="completed", completed_at=utcnow_iso(), target=target, old_endpoint=OLD_ENDPOINT_AFTER,
         phase_reason=f"cut over to cluster {ctx.resource_id} (primary {cluster.get('primary')}); the source "
         f"stopped at {refused}, its endpoint forwards to the cluster, its data is kept until you delete it")  # fmt: skip
    return f"completed: the old endpoint and {target['uri']} reach the cluster's primary"


def _note_on_source(ctx: StepContext, reason: str) -> None:
    if ctx.ports.store.get(instances.KIND, _source(ctx)) is not None:
        ctx.ports.store.update(
            instances.KIND, _source(ctx), {"status_reason": reason, "updated_at": utcnow_iso()}
        )


def _failed(ctx: StepContext, error: str) -> None:
    """The migration failed: say so. Before the promotion the source is given its writes back
    (it stays the primary of the data: started again if the cutover had stopped it) and the
    cluster is left failed for the user to delete; the source may then be migrated again."""
    record = ctx.ports.store.get(KIND, ctx.params["migration_id"])
    if record is None:
        return
    notes = [error]
    source = ctx.ports.store.get(instances.KIND, _source(ctx))
    if not record.get("promoted") and source is not None:
        try:
            if record.get("source_stopped"):
                # The port goes back to the source: a forwarding started beside a failed
                # promotion must not hold it.
                port = int(source["endpoint"]["port"])
                notes.append(ctx.ports.cluster_engine.stop_forwarding(ctx.resource_id, port))
                ctx.ports.engine.start(instances.server_spec(source))
                ctx.ports.store.update(instances.KIND, source["id"], {
                    "status": "running", "desired_state": "running", "migrated_to": None, "updated_at": utcnow_iso(),
                })  # fmt: skip
                notes.append(f"the source {source['id']} started again")
            if record.get("writes_refused_at"):
                ctx.ports.engine.set_read_only(source["id"], False)
                notes.append(f"the source {source['id']} takes writes again")
            _note_on_source(ctx, f"migration {record['id']} failed; serves reads and writes as before")
        except EngineError as exc:
            notes.append(f"the source could not be given its writes back: {exc}")
    if not record.get("promoted"):
        ctx.ports.store.release(source_claim(_source(ctx)), record["id"])
        if source is not None:
            ctx.ports.store.update(instances.KIND, source["id"], {"migration_id": None})
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
# Writes are refused from refuse_writes until promote_and_forward ends: the steps between are short.
_CUTOVER: tuple[tuple[str, StepFn], ...] = (
    ("refuse_writes", _refuse_writes),
    ("wait_replayed", _wait_replayed),
    ("promote_and_forward", _switch),
    ("create_database", clusters.create_database_step),
    ("move_dependents", _move_dependents),
    ("mark_running", clusters.mark_created_step),
    ("complete", _complete),
)

WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(BUILD, (*_BUILD, ("mark_ready", _mark_ready)), _failed),
    Workflow(BUILD_AND_CUT_OVER, (*_BUILD, *_CUTOVER), _failed),
    Workflow(CUTOVER, _CUTOVER, _failed),
)
