"""The restore workflows: each a list of short, idempotent steps run by the worker.

Every workflow carries `recovery_id` in its params; steps read what to restore from that
record and note what they checked in it (`integrity`: `IntegrityCheckResult` records), which
the recovery status shows.
See `restores` for what each mode means. The order of the in-place workflows is what makes
them safe: the server is stopped before anything is touched, its data directory is set aside
(not deleted) before the restore, and deleted only once the restored server runs and
archives; a failure before that puts it back and the resource returns to its previous status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pgfleet.core import resources
from pgfleet.core.errors import EngineError, PgfleetError
from pgfleet.core.leases import lease_kept
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext, StepFn, Workflow
from pgfleet.core.resources import ResourceType
from pgfleet.domains import archive, clusters, instances
from pgfleet.domains.backups import restores as restores_service
from pgfleet.domains.backups.models import CheckResult, IntegrityCheckResult
from pgfleet.ports.restore_host import ServerLocation

INSTANCE, CLUSTER = instances.INSTANCE, clusters.CLUSTER
LEADER_TIMEOUT = 180.0


# --- the recovery record ------------------------------------------------------------------------


def _recovery(ctx: StepContext) -> dict[str, Any]:
    record = ctx.ports.store.get(restores_service.KIND, ctx.params["recovery_id"])
    if record is None:
        raise EngineError(f"recovery {ctx.params['recovery_id']} is gone")
    return record


def _note(ctx: StepContext, check: str, status: CheckResult, details: str) -> None:
    """Record the outcome of one integrity check (replacing an earlier one of that name)."""
    for _ in range(3):
        record = _recovery(ctx)
        results = [r for r in restores_service.stored_integrity(record) if r.check != check]
        results.append(IntegrityCheckResult(check=check, status=status, details=details))
        try:
            ctx.ports.store.update(
                restores_service.KIND,
                record["id"],
                {"integrity": [r.to_record() for r in results]},
                record["revision"],
            )
            return
        except PgfleetError:
            continue


def _resource(ctx: StepContext) -> dict[str, Any]:
    kind = _recovery(ctx).get("target_kind") or "instance"
    return resources.step_record(ctx, CLUSTER if kind == "cluster" else INSTANCE)


def _recovery_failed(ctx: StepContext, error: str) -> None:
    record = ctx.ports.store.get(restores_service.KIND, ctx.params.get("recovery_id", ""))
    if record is not None:
        ctx.ports.store.update(
            restores_service.KIND, record["id"], {"error": error, "finished_at": utcnow_iso()}
        )


# --- steps shared by the modes --------------------------------------------------------------------


def _leader(ctx: StepContext, record: dict[str, Any]) -> str:
    return str(ctx.params.get("leader") or record["nodes"][0]["id"])


def _restored_location(ctx: StepContext, record: dict[str, Any]) -> ServerLocation:
    """Where the backup is laid out: the instance, or the node that will lead the cluster."""
    if archive.service.is_cluster(record):
        return archive.service.node_location(ctx.ports, record, _leader(ctx, record))
    return archive.service.own_location(ctx.ports, record)


def _all_locations(ctx: StepContext, record: dict[str, Any]) -> list[ServerLocation]:
    if archive.service.is_cluster(record):
        return [archive.service.node_location(ctx.ports, record, n["id"]) for n in record["nodes"]]
    return [archive.service.own_location(ctx.ports, record)]


def _lay_out(ctx: StepContext, location: ServerLocation) -> str:
    """pgBackRest restore of the recovery's backup and target into `location`'s (empty) data
    directory."""
    recovery = _recovery(ctx)
    target = archive.records.parse_iso(recovery["target_time"]) if recovery["to"] == "time" else None
    label = recovery["backup_label"] if recovery["to"] in ("end", "time") else None
    with lease_kept(ctx):
        # exact: WAL up to the target is archived before recovery starts (flush_wal), even
        # when it is not yet when the files are laid out.
        return ctx.ports.backup_engine.restore(
            recovery["stanza"], label, target, location.data_dir, exact=recovery["to"] == "time"
        )


def _restore_files(ctx: StepContext) -> str:
    """Set every data directory of the resource aside (a cluster's replicas are re-cloned)
    and lay out the backup where the restored server will run."""
    record = _resource(ctx)
    restored = _restored_location(ctx, record)
    for location in _all_locations(ctx, record):
        ctx.ports.restore_host.set_aside(location)
    return _lay_out(ctx, restored)


def _recover(archive_timeline: bool) -> StepFn:
    """Step: replay WAL to the target. With `archive_timeline`, the new timeline is archived into the
    resource's own stanza from its first segment; else archiving starts once the new
    resource's stanza exists. A single server recovers as itself (provisioned before) and
    keeps running; a cluster's node recovers alone, then Patroni takes it over."""

    def step(ctx: StepContext) -> str:
        record = _resource(ctx)
        settings = dict(record.get("archive_settings") or {}) if archive_timeline else {}
        cluster_id = record["id"] if archive.service.is_cluster(record) else None
        with lease_kept(ctx):
            reason = ctx.ports.restore_host.recover(
                _restored_location(ctx, record), settings, cluster_id, keep_running=cluster_id is None
            )
        recovery = _recovery(ctx)
        target = {"end": "the end of the backup", "latest": "the latest archived WAL"}.get(
            recovery["to"], recovery["target_time"]
        )
        _note(
            ctx,
            "RECOVERY_TARGET",
            "PASSED",
            f"recovered to {target} from backup {recovery['backup_id']}: {reason}",
        )
        return reason

    return step


def _commit(ctx: StepContext) -> str:
    record = _resource(ctx)
    reasons = {ctx.ports.restore_host.discard_previous(location) for location in _all_locations(ctx, record)}
    return "; ".join(sorted(reasons))


def _verify_archiving(ctx: StepContext) -> str:
    reason = archive.service.flush_wal(ctx.ports, _resource(ctx))
    _note(ctx, "ARCHIVING", "PASSED", reason)
    return reason


def _flush_if_running(ctx: StepContext) -> str:
    """Archive what is committed before stopping, so the latest moment is restorable. Best
    effort: a lost or broken server has nothing more to give."""
    record = _resource(ctx)
    try:
        return archive.service.flush_wal(ctx.ports, record)
    except EngineError as exc:
        return f"could not archive the latest WAL ({exc}); restoring what the stanza has"


def _flush_source(ctx: StepContext) -> str:
    """New resource: archive what the running source has committed, so a target up to the
    moment of the request is in the archive."""
    recovery = _recovery(ctx)
    source = ctx.ports.store.get(recovery["source_kind"], recovery["parent_id"])
    if source is None or source["status"] != "running":
        return "the source is not running: restoring what its stanza has"
    try:
        return archive.service.flush_wal(ctx.ports, source)
    except EngineError as exc:
        return f"could not archive the source's latest WAL ({exc}); restoring what its stanza has"


def _restore_files_flushing_source(ctx: StepContext) -> str:
    """`_restore_files`, while the running source archives what it has committed: the WAL is
    needed only once recovery starts, and the restore keeps its time target `exact` whatever
    the archive holds when the files are laid out."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        flushed = pool.submit(_flush_source, ctx)
        reason = _restore_files(ctx)
        return f"{reason}; {flushed.result()}"


def _backup_after(ctx: StepContext) -> str:
    """The restored data's first full backup: the start of its restorable window."""
    return archive.lifecycle.take_full_backup(ctx, _resource(ctx), "restore")


def _finish(ctx: StepContext) -> str:
    record = _resource(ctx)
    recovery = _recovery(ctx)
    if archive.service.is_cluster(record):
        primary = archive.service.primary_node(ctx.ports, record)
        _note(ctx, "CONNECTIVITY", "PASSED", f"primary {primary} accepts writes")
    else:
        state = ctx.ports.engine.state(record["id"])
        _note(ctx, "CONNECTIVITY", "PASSED" if state.accepting_connections else "FAILED", state.reason)
    ctx.ports.store.update(restores_service.KIND, recovery["id"], {"finished_at": utcnow_iso()})
    return f"{record['id']} restored from backup {recovery['backup_id']}"


# --- clusters ----------------------------------------------------------------------------------------


def _start_leader(ctx: StepContext) -> str:
    """Start the restored node alone under Patroni and wait until it leads."""
    record = _resource(ctx)
    leader = _leader(ctx, record)
    spec = clusters.cluster_spec(record)
    ctx.ports.cluster_engine.start_node(spec, spec.node(leader))
    deadline = time.monotonic() + LEADER_TIMEOUT
    while time.monotonic() < deadline:
        members = {m.node_id: m for m in ctx.ports.cluster_engine.members(record["id"])}
        member = members.get(leader)
        if member is not None and member.role == "primary" and member.running:
            return f"{leader} leads the cluster on timeline {member.timeline}"
        time.sleep(0.5)
    raise EngineError(f"{leader} did not become the primary within {LEADER_TIMEOUT:.0f}s")


def _reset_cluster_state(ctx: StepContext) -> str:
    return ctx.ports.restore_host.reset_cluster_state(ctx.resource_id)


# --- in place: stop first, roll back on failure --------------------------------------------------------


def _mark_restored(rtype: ResourceType) -> StepFn:
    def step(ctx: StepContext) -> str:
        recovery = _recovery(ctx)
        reason = f"restored in place from backup {recovery['backup_id']} ({recovery['to']})"
        if rtype is CLUSTER:
            record = clusters.refresh_topology(
                ctx.ports, _resource(ctx), status="running", status_reason=reason
            )
            return f"cluster is running; primary {record['primary']}"
        resources.set_status(ctx, rtype, "running", reason, desired_state="running")
        return "instance is running"

    return step


def _roll_back(rtype: ResourceType) -> Callable[[StepContext, str], None]:
    """on_failure of an in-place restore: put the set-aside data back and the resource into
    the status it had (a failure after the commit leaves the restored data, running)."""

    def on_failure(ctx: StepContext, error: str) -> None:
        _recovery_failed(ctx, error)
        record = ctx.ports.store.get(rtype.kind, ctx.resource_id)
        if record is None:
            return
        was = ctx.params.get("was_status", "stopped")
        notes = []
        try:
            notes.append(_put_back(ctx, record, was))
            status = was
        except PgfleetError as exc:
            notes.append(f"roll-back failed: {exc}")
            status = "failed"
        ctx.ports.store.update(
            rtype.kind,
            record["id"],
            {
                "status": status,
                "status_reason": f"restore failed: {error}; {'; '.join(notes)}",
                "updated_at": utcnow_iso(),
            },
        )

    return on_failure


def _put_back(ctx: StepContext, record: dict[str, Any], was: str) -> str:
    host = ctx.ports.restore_host
    if archive.service.is_cluster(record):
        for node in record["nodes"]:
            ctx.ports.cluster_engine.stop_node(record["id"], node["id"])
        reasons = {host.roll_back(location) for location in _all_locations(ctx, record)}
        host.reset_cluster_state(record["id"])
        if was == "running":
            spec = clusters.cluster_spec(record)
            for node in spec.nodes:
                ctx.ports.cluster_engine.start_node(spec, node)
            ctx.ports.cluster_engine.wait_until_healthy(spec, timeout=clusters.HEALTHY_TIMEOUT)
        return "; ".join(sorted(reasons)) + ("; restarted" if was == "running" else "")
    ctx.ports.engine.stop(record["id"])
    reason = host.roll_back(archive.service.own_location(ctx.ports, record))
    if was == "running":
        ctx.ports.engine.start(instances.server_spec(record))
        reason += "; restarted"
    return reason


def _new_failed(rtype: ResourceType) -> Callable[[StepContext, str], None]:
    mark = resources.mark_failed(rtype)

    def on_failure(ctx: StepContext, error: str) -> None:
        _recovery_failed(ctx, error)
        mark(ctx, error)

    return on_failure


# --- selective and logical: one database, in place -------------------------------------------------------


def _scratch_id(ctx: StepContext) -> str:
    return "scr-" + ctx.params["recovery_id"].split("-", 1)[1]


def _dump_path(ctx: StepContext) -> Any:
    recovery = _recovery(ctx)
    return ctx.ports.restore_host.dump_path(recovery["stanza"], recovery["id"])


def _restore_scratch(ctx: StepContext) -> str:
    """An empty scratch server (whatever an earlier attempt left is removed) with the backup
    laid out in it."""
    location = ctx.ports.restore_host.prepare_scratch(_scratch_id(ctx))
    return _lay_out(ctx, location)


def _start_scratch(ctx: StepContext) -> str:
    with lease_kept(ctx):
        return ctx.ports.restore_host.start_scratch(ctx.ports.restore_host.scratch_location(_scratch_id(ctx)))


def _dump_database(ctx: StepContext) -> str:
    recovery = _recovery(ctx)
    passphrase = archive.service.cipher_passphrase(ctx.ports.secrets, recovery["stanza"])
    location = ctx.ports.restore_host.scratch_location(_scratch_id(ctx))
    with lease_kept(ctx):
        size = ctx.ports.restore_host.dump_database(
            location, recovery["database"], _dump_path(ctx), passphrase, recovery.get("schema")
        )
    return f"dumped {recovery.get('schema') or recovery['database']} ({size / 1e6:.1f} MB, encrypted)"


def _remove_scratch(ctx: StepContext) -> str:
    return ctx.ports.restore_host.remove_scratch(_scratch_id(ctx))


def _restore_database(ctx: StepContext) -> str:
    recovery = _recovery(ctx)
    passphrase = archive.service.cipher_passphrase(ctx.ports.secrets, recovery["stanza"])
    location = archive.service.primary_location(ctx.ports, _resource(ctx))
    with lease_kept(ctx):
        reason = ctx.ports.restore_host.restore_database(
            location,
            recovery["database"],
            _dump_path(ctx),
            passphrase,
            recovery.get("owner"),
            recovery.get("schema"),
        )
    _note(ctx, "DATABASE_RESTORE", "PASSED", reason)
    return reason


def _delete_dump(ctx: StepContext) -> str:
    return ctx.ports.restore_host.delete_dump(_dump_path(ctx))


def _restore_logical(ctx: StepContext) -> str:
    recovery = _recovery(ctx)
    with lease_kept(ctx):
        reason = archive.logical.restore_logical_backup(
            ctx.ports, recovery["backup_id"], target=_resource(ctx)
        )
    _note(ctx, "DATABASE_RESTORE", "PASSED", reason)
    return reason


def _selective_failed(ctx: StepContext, error: str) -> None:
    _recovery_failed(ctx, error)
    for cleanup in (_remove_scratch, _delete_dump):
        try:
            cleanup(ctx)
        except PgfleetError:
            pass


# --- the workflows ----------------------------------------------------------------------------------------


# Declared in this domain's manifest; the handlers register them.
WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        "instance.restore",
        (
            ("configure_archiving", archive.service.configure_step(INSTANCE)),
            ("restore_files", _restore_files_flushing_source),
            ("provision", instances.provision_step),
            ("recover", _recover(archive_timeline=True)),
            ("start", instances.start_step),
            ("commit", _commit),
            ("create_database", instances.create_database_step),
            ("create_stanza", archive.service.create_stanza_step(INSTANCE)),
            ("initial_backup", archive.lifecycle.initial_backup_step(INSTANCE)),
            ("mark_running", instances.mark_running_step),
            ("finish", _finish),
        ),
        _new_failed(INSTANCE),
    ),
    Workflow(
        "instance.restore_in_place",
        (
            ("flush_wal", _flush_if_running),
            ("stop", instances.stop_step),
            ("restore_files", _restore_files),
            ("provision", instances.provision_step),
            ("recover", _recover(archive_timeline=True)),
            ("start", instances.start_step),
            ("verify_archiving", _verify_archiving),
            ("commit", _commit),
            ("mark_running", _mark_restored(INSTANCE)),
            ("backup", _backup_after),
            ("finish", _finish),
        ),
        _roll_back(INSTANCE),
    ),
    Workflow(
        "cluster.restore",
        (
            ("configure_archiving", archive.service.configure_step(CLUSTER)),
            ("provision", clusters.provision_step),
            ("restore_files", _restore_files_flushing_source),
            ("recover", _recover(archive_timeline=False)),
            ("start_leader", _start_leader),
            ("start_nodes", clusters.start_nodes_step),
            ("wait_healthy", clusters.wait_healthy_step),
            ("commit", _commit),
            ("create_database", clusters.create_database_step),
            ("create_stanza", archive.service.create_stanza_step(CLUSTER)),
            ("initial_backup", archive.lifecycle.initial_backup_step(CLUSTER)),
            ("mark_running", clusters.mark_running_step("restored from a backup; replicas streaming")),
            ("finish", _finish),
        ),
        _new_failed(CLUSTER),
    ),
    Workflow(
        "cluster.restore_in_place",
        (
            ("flush_wal", _flush_if_running),
            ("stop_nodes", clusters.stop_nodes_step),
            ("restore_files", _restore_files),
            ("recover", _recover(archive_timeline=True)),
            ("reset_cluster_state", _reset_cluster_state),
            ("start_leader", _start_leader),
            ("start_nodes", clusters.start_nodes_step),
            ("wait_healthy", clusters.wait_healthy_step),
            ("verify_archiving", _verify_archiving),
            ("commit", _commit),
            ("mark_running", _mark_restored(CLUSTER)),
            ("backup", _backup_after),
            ("finish", _finish),
        ),
        _roll_back(CLUSTER),
    ),
    Workflow(
        "backup.restore_selective",
        (
            ("restore_scratch", _restore_scratch),
            ("start_scratch", _start_scratch),
            ("dump_database", _dump_database),
            ("remove_scratch", _remove_scratch),
            ("restore_database", _restore_database),
            ("delete_dump", _delete_dump),
            ("finish", _finish),
        ),
        _selective_failed,
    ),
    Workflow(
        "backup.restore_logical",
        (("restore_database", _restore_logical), ("finish", _finish)),
        _recovery_failed,
    ),
)
