"""Blue/green major-version upgrade of a single instance (`instance.upgrade.blue_green`).

Blue is the instance's server. Green is a new server at the target version, `<id>-green`, on
a port of its own, holding blue's roles and schema and fed by native logical replication (a
publication on blue, a subscription on green; see the engine's `subscribe`). The operation
shows the replication on its `detail` (`phase`, `tables_ready`/`tables_total`, `lag_bytes`).

Before the replication blue needs wal_level=logical: when it is lower, the first step sets it
and restarts blue once (about a second without connections), as the pre-flight check says.

Once green has copied every table and caught up, the cutover runs on its own:
1. blue refuses writes (read-only, its sessions ended): the WAL position then is the last one
   any acknowledged commit can be below;
2. green has applied blue's WAL up to there, and has the same tables and columns (DDL is not
   replicated: a schema changed on blue during the upgrade fails it, and it rolls back);
3. sequences (which logical replication does not carry) get blue's values;
4. the replication is dropped, both servers stop, and the directories are swapped: blue
   becomes `<id>-blue<from>`, kept stopped, and green becomes `<id>`, so the instance keeps
   its id, its archive location and its logs;
5. green starts on blue's port: clients reconnect to the same host:port; read replicas are
   copied again from it (a physical standby cannot follow across versions).

A cutover not done within `cutover_timeout_seconds` of step 1, or any failure before green
serves on the endpoint, rolls back: blue gets its directory back if it moved, starts, takes
writes again; green and its port are released. After green serves, the new version is the
instance and a later failure is reported, never rolled back over writes green has taken.

Blue stays on disk, stopped, for `keep_old_hours` (the instance's `kept_blue` says where and
until when): reconcile removes it then, and deleting the instance removes it with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import leases, operations, resources
from pgfleet.core import port_allocation as ports_allocation
from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict, EngineError, NotFound, PgfleetError
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import Cascade, StepContext, StepFn, Workflow
from pgfleet.domains import archive, instances, replicas
from pgfleet.domains.upgrades import blue_green_cluster
from pgfleet.domains.upgrades.common import COPY_FACTOR, COPY_HEADROOM_BYTES, workflow_type
from pgfleet.domains.upgrades.models import UpgradeCheckItem
from pgfleet.ports.engine import ServerSpec, SubscriptionProgress

INSTANCE = instances.INSTANCE
# After this step green serves on the endpoint: no roll-back past it.
POINT_OF_NO_RETURN = "start_on_endpoint"
# The cutover begins once green is this close behind blue: the rest replays in a moment.
READY_LAG_BYTES = 1024 * 1024
INITIAL_COPY_TIMEOUT_S = 6 * 3600
CATCH_UP_TIMEOUT_S = 600
POLL_S = 0.05
REPORT_EVERY_S = 2.0


def green_id(instance_id: str) -> str:
    return f"{instance_id}-green"


def kept_id(instance_id: str, version: str) -> str:
    return f"{instance_id}-blue{version}"


# --- pre-flight -----------------------------------------------------------------------------------


def checks(ports: Ports, kind: str, record: dict[str, Any], target: str) -> list[UpgradeCheckItem]:
    """The logical replication prerequisites on blue, the extensions of the target, free disk
    for a full copy. Changes nothing."""
    if kind != instances.KIND:
        return blue_green_cluster.checks(ports, record, target)
    try:
        ready = ports.engine.logical_readiness(record["id"], target)
    except EngineError as exc:
        return [UpgradeCheckItem(name="logical replication", passed=False, detail=str(exc))]
    mb = 1024 * 1024
    need = int(ready.data_bytes * COPY_FACTOR) + COPY_HEADROOM_BYTES
    items = [
        _item("primary keys", ready.tables_without_key,
              "tables without a primary key or replica identity (their updates and deletes cannot be "
              "replicated; add a primary key or ALTER TABLE ... REPLICA IDENTITY FULL)",
              f"every table of {len(ready.databases)} database(s) has a primary key or a replica identity"),
        _item("unlogged tables", ready.unlogged_tables,
              "unlogged tables are not replicated (ALTER TABLE ... SET LOGGED, or drop them)",
              "no unlogged table"),
        _item("large objects", ready.large_objects,
              "large objects are not replicated", "no large object"),
        _item("ddl in flight", ready.ddl_in_flight,
              "schema changes in progress (ACCESS EXCLUSIVE locks; DDL is not replicated: finish them first, "
              "and change no schema during the upgrade)",
              "no schema change in progress"),
        _item("extensions", ready.missing_extensions,
              f"extensions not available in PostgreSQL {target}",
              f"every extension in use is available in PostgreSQL {target}"),
    ]  # fmt: skip
    if ready.wal_level == "logical":
        items.append(UpgradeCheckItem(name="wal_level", passed=True, detail="wal_level is logical"))
    else:
        items.append(
            UpgradeCheckItem(
                name="wal_level", passed=True,
                detail=f"wal_level is {ready.wal_level}: the upgrade sets it to logical and restarts the "
                "instance once before replicating (about a second without connections)",
            )
        )  # fmt: skip
    needed = len(ready.databases)
    slots_ok = ready.free_slots >= needed and ready.free_wal_senders >= needed
    items.append(
        UpgradeCheckItem(
            name="replication slots", passed=slots_ok,
            detail=f"{needed} slot(s) and WAL sender(s) needed (one per database), {ready.free_slots} slot(s) and "
            f"{ready.free_wal_senders} sender(s) free",
        )
    )  # fmt: skip
    items.append(
        UpgradeCheckItem(
            name="prepared transactions", passed=ready.prepared_transactions == 0,
            detail=f"{ready.prepared_transactions} prepared transaction(s): commit or roll them back first"
            if ready.prepared_transactions else "no prepared transaction",
        )
    )  # fmt: skip
    items.append(
        UpgradeCheckItem(
            name="disk", passed=ready.free_bytes >= need,
            detail=f"{ready.free_bytes // mb} MB free; the green server needs {need // mb} MB "
            f"(data {ready.data_bytes // mb} MB)",
        )
    )  # fmt: skip
    return items


def _item(name: str, offenders: list[str], problem: str, passed: str) -> UpgradeCheckItem:
    if not offenders:
        return UpgradeCheckItem(name=name, passed=True, detail=passed)
    return UpgradeCheckItem(name=name, passed=False, detail=f"{problem}: {', '.join(offenders)}")


# --- helpers --------------------------------------------------------------------------------------


def _record(ctx: StepContext) -> dict[str, Any]:
    return resources.step_record(ctx, INSTANCE)


def _update(ctx: StepContext, **changes: Any) -> dict[str, Any]:
    record = _record(ctx)
    return ctx.ports.store.update(
        INSTANCE.kind, record["id"], {**changes, "updated_at": utcnow_iso()}, record["revision"]
    )


def _target(ctx: StepContext) -> str:
    return str(ctx.params["target_version"])


def _from(ctx: StepContext) -> str:
    return str(ctx.params["from_version"])


def _report(ctx: StepContext, **detail: Any) -> None:
    """operations.report, again when the lease heartbeat (lease_kept) wrote the operation in
    between."""
    for attempt in range(5):
        try:
            operations.report(ctx, **detail)
            return
        except Conflict:
            if attempt == 4:
                raise
            time.sleep(0.05)


def _detail(ctx: StepContext) -> dict[str, Any]:
    fresh = ctx.ports.store.get(operations.KIND, ctx.operation["id"]) or ctx.operation
    return dict(fresh.get("detail") or {})


def _green(ctx: StepContext) -> dict[str, Any]:
    green = _record(ctx).get("upgrade_green")
    if not green:
        raise NotFound(f"the green server of {ctx.resource_id} has no port reserved")
    return dict(green)


def _green_spec(ctx: StepContext) -> ServerSpec:
    """Green before the cutover: the instance's size and settings at the target version, on
    its own port, not archiving (it takes over the instance's archiving at the cutover)."""
    record, green = _record(ctx), _green(ctx)
    return ServerSpec(
        server_id=green["server_id"],
        version=_target(ctx),
        port=int(green["port"]),
        cpu=record["cpu"],
        memory_mb=record["memory"],
        storage_gb=record["storage"],
        settings=dict(record.get("settings", {})),
    )


def _deadline_passed(ctx: StepContext) -> None:
    deadline = _detail(ctx).get("cutover_deadline")
    if deadline is not None and time.time() > float(deadline):
        raise EngineError(
            f"the cutover did not finish within {ctx.params.get('cutover_timeout_seconds')} s of refusing writes"
        )


def _progress(ctx: StepContext) -> SubscriptionProgress:
    progress = ctx.ports.engine.subscription_progress(_green(ctx)["server_id"], ctx.resource_id)
    if progress.errors:
        raise EngineError("the logical replication failed: " + "; ".join(progress.errors))
    return progress


PHASE_REASONS = {
    "initial_copy": "green copies the tables (then streams blue's changes); blue serves as before",
    "catching_up": "green streams blue's changes; the cutover begins once it is close behind",
}


def _report_progress(ctx: StepContext, phase: str, progress: SubscriptionProgress) -> None:
    _report(
        ctx, phase=phase, phase_reason=PHASE_REASONS[phase], lag_bytes=progress.lag_bytes,
        tables_ready=progress.tables_ready, tables_total=progress.tables_total,
    )  # fmt: skip


def _wait(
    ctx: StepContext, phase: str, timeout: float, done: Callable[[SubscriptionProgress], bool]
) -> SubscriptionProgress:
    """Poll the subscription until `done(progress)`, reporting it every few seconds."""
    started = time.monotonic()
    reported = 0.0
    with leases.lease_kept(ctx):
        while True:
            progress = _progress(ctx)
            if done(progress):
                _report_progress(ctx, phase, progress)
                return progress
            if time.monotonic() - reported >= REPORT_EVERY_S:
                _report_progress(ctx, phase, progress)
                reported = time.monotonic()
            if time.monotonic() - started > timeout:
                raise EngineError(
                    f"{phase}: not done after {timeout:.0f} s ({progress.tables_ready}/{progress.tables_total} "
                    f"tables copied, {progress.lag_bytes} bytes behind)"
                )
            time.sleep(POLL_S if phase == "catching_up" else 0.5)


# --- steps before the cutover ---------------------------------------------------------------------


def _prepare_blue(ctx: StepContext) -> str:
    _report(ctx, phase="preparing", phase_reason="wal_level=logical on the instance")
    return ctx.ports.engine.enable_logical_decoding(instances.server_spec(_record(ctx)))


def _reserve_green(ctx: StepContext) -> str:
    record = _record(ctx)
    if record.get("upgrade_green"):
        return (
            f"green server {record['upgrade_green']['server_id']} has port {record['upgrade_green']['port']}"
        )
    server_id = green_id(record["id"])
    (port,) = ports_allocation.reserve(ctx.ports, server_id)
    _update(ctx, upgrade_green={"server_id": server_id, "port": port})
    return f"reserved port {port} for the green server {server_id}"


def _create_green(ctx: StepContext) -> str:
    _report(ctx, phase="creating_green", phase_reason="the green server gets the roles and schema")
    with leases.lease_kept(ctx):
        return ctx.ports.engine.provision_logical_copy(_green_spec(ctx), ctx.resource_id)


def _subscribe(ctx: StepContext) -> str:
    return ctx.ports.engine.subscribe(_green(ctx)["server_id"], ctx.resource_id)


def _initial_copy(ctx: StepContext) -> str:
    started = time.monotonic()
    progress = _wait(
        ctx, "initial_copy", INITIAL_COPY_TIMEOUT_S,
        lambda p: p.tables_ready == p.tables_total and p.confirmed_position is not None,
    )  # fmt: skip
    return f"{progress.tables_total} table(s) copied in {time.monotonic() - started:.1f}s; streaming"


def _prepare_cutover(ctx: StepContext) -> str:
    """Statistics on green (its tables were just filled), and checkpoints on both servers so
    their shutdowns at the cutover are quick."""
    _report(ctx, phase="analyzing", phase_reason="planner statistics on the green server")
    green = _green(ctx)["server_id"]
    with leases.lease_kept(ctx):
        analyzed = ctx.ports.engine.after_upgrade(green)
        notes = [ctx.ports.engine.checkpoint(green), ctx.ports.engine.checkpoint(ctx.resource_id)]
    return f"{analyzed}; {'; '.join(notes)}"


def _catch_up(ctx: StepContext) -> str:
    started = time.monotonic()
    progress = _wait(
        ctx, "catching_up", CATCH_UP_TIMEOUT_S,
        lambda p: p.lag_bytes is not None and p.lag_bytes <= READY_LAG_BYTES,
    )  # fmt: skip
    return f"{progress.lag_bytes} bytes behind after {time.monotonic() - started:.1f}s: cutting over"


# --- the cutover ----------------------------------------------------------------------------------


def _refuse_writes(ctx: StepContext) -> str:
    detail = _detail(ctx)
    started = float(detail.get("writes_refused_started") or time.time())
    deadline = started + int(ctx.params.get("cutover_timeout_seconds", 300))
    position = ctx.ports.engine.set_read_only(ctx.resource_id, True)
    _report(
        ctx, phase="cutting_over", phase_reason="writes refused on the instance; green applies the rest",
        final_position=position, writes_refused_at=detail.get("writes_refused_at") or utcnow_iso(),
        writes_refused_started=started, cutover_deadline=deadline,
    )  # fmt: skip
    return f"blue refuses writes, its sessions ended; its last WAL position {position}"


def _wait_applied(ctx: StepContext) -> str:
    final = int(_detail(ctx)["final_position"])
    started = time.monotonic()
    with leases.lease_kept(ctx):
        while True:
            _deadline_passed(ctx)
            progress = _progress(ctx)
            if progress.confirmed_position is not None and progress.confirmed_position >= final:
                # A session that overrode read-only (BEGIN READ WRITE) may have written since.
                now = ctx.ports.engine.wal_position(ctx.resource_id)
                if now <= final:
                    break
                final = now
            time.sleep(POLL_S)
    _report(ctx, lag_bytes=0, final_position=final)
    differences = ctx.ports.engine.schema_differences(_green(ctx)["server_id"], ctx.resource_id)
    if differences:  # DDL on blue since the copy: its tables or columns would be lost
        raise EngineError(
            f"the schema changed on the instance during the upgrade ({len(differences)} difference(s): "
            f"{'; '.join(differences[:5])}); DDL is not replicated"
        )
    return (
        f"green applied blue's WAL up to {final} in {time.monotonic() - started:.1f}s; "
        "the tables and columns match"
    )


def _copy_sequences(ctx: StepContext) -> str:
    _deadline_passed(ctx)
    return ctx.ports.engine.copy_sequences(_green(ctx)["server_id"], ctx.resource_id)


def _stop_replication(ctx: StepContext) -> str:
    _deadline_passed(ctx)
    return ctx.ports.engine.unsubscribe(_green(ctx)["server_id"], ctx.resource_id)


def _swap(ctx: StepContext) -> str:
    """Both servers stopped; blue's directory becomes the kept one, green's the instance's."""
    _deadline_passed(ctx)
    engine, instance_id = ctx.ports.engine, ctx.resource_id
    green, kept = _green(ctx)["server_id"], kept_id(instance_id, _from(ctx))
    # Both at once: writes are refused until green is back on the endpoint.
    with ThreadPoolExecutor(max_workers=2) as pool:
        stopped = [pool.submit(engine.stop, green), pool.submit(engine.stop, instance_id)]
        notes = [f"green: {stopped[0].result()}", f"blue: {stopped[1].result()}"]
    engine.release_resources(instance_id)
    if engine.server_major_version(instance_id) == _from(ctx):
        notes.append(engine.rename_server(instance_id, kept))
    if engine.server_major_version(instance_id) is None:
        notes.append(engine.rename_server(green, instance_id))
    if engine.server_major_version(instance_id) != _target(ctx):
        raise EngineError(f"after the swap {instance_id} is not a PostgreSQL {_target(ctx)} server")
    keep_until = datetime.now(UTC) + timedelta(hours=int(ctx.params.get("keep_old_hours", 24)))
    _update(
        ctx, version=_target(ctx),
        kept_blue={"server_id": kept, "version": _from(ctx), "keep_until": keep_until.isoformat()},
    )  # fmt: skip
    return "; ".join(notes)


def _start_on_endpoint(ctx: StepContext) -> str:
    """Green takes over the instance's archiving and starts on blue's port."""
    _deadline_passed(ctx)
    archive.service.configure_step(INSTANCE)(ctx)
    spec = instances.server_spec(_record(ctx))
    ctx.ports.engine.provision(spec)
    reason = ctx.ports.engine.start(spec)
    started = _detail(ctx).get("writes_refused_started")
    refused = round(time.time() - float(started), 1) if started else None
    _report(
        ctx, phase="verifying", writes_refused_seconds=refused,
        phase_reason=f"green serves on the instance's endpoint ({refused} s after writes were refused)",
    )  # fmt: skip
    return f"PostgreSQL {_target(ctx)} {reason} on port {spec.port}, {refused} s after writes were refused"


# --- after the cutover ----------------------------------------------------------------------------


def _verify(ctx: StepContext) -> str:
    record = _record(ctx)
    running = ctx.ports.engine.server_version(record["id"])
    if running.split(".")[0] != _target(ctx):
        raise EngineError(f"the instance runs PostgreSQL {running}, not {_target(ctx)}")
    password = ctx.ports.secrets.get(instances.secret_name(record))
    if password is None:
        raise NotFound("the instance's password is missing from the secret store")
    ctx.ports.engine.ensure_database(record["id"], record["database"], record["username"], password)
    return f"PostgreSQL {running} accepts connections and writes"


def _rebuild_replicas(ctx: StepContext) -> str:
    """Read replicas are physical standbys of blue: copied again from green."""
    with leases.lease_kept(ctx):
        return replicas.rebuild_all_for_instance(ctx, _target(ctx))


def _release_green_port(ctx: StepContext) -> str:
    green = _record(ctx).get("upgrade_green")
    if not green:
        return "already released"
    ports_allocation.release(ctx.ports, int(green["port"]), green["server_id"])
    _update(ctx, upgrade_green=None)
    return f"released port {green['port']} (green now serves on the instance's port)"


def _first_backup(ctx: StepContext) -> str:
    backup = archive.lifecycle.start_first_backup(ctx, _record(ctx))
    _update(ctx, first_backup_id=backup["id"])
    return f"first backup on PostgreSQL {_target(ctx)}: {backup['id']} (operation {backup['operation_id']})"


def _mark(ctx: StepContext) -> str:
    record = _record(ctx)
    detail = _detail(ctx)
    kept = record.get("kept_blue") or {}
    note = (
        f"; upgraded blue/green from PostgreSQL {_from(ctx)} to {_target(ctx)} "
        f"({detail.get('writes_refused_seconds')} s of refused writes); the old server is kept stopped as "
        f"{kept.get('server_id')} until {kept.get('keep_until')}"
    )
    limits = ctx.ports.engine.apply_resources(instances.server_spec(record))
    resources.set_status(
        ctx, INSTANCE, "running", f"running and accepting connections; {limits}{note}", limits=limits
    )
    _report(ctx, phase="completed", phase_reason=note.removeprefix("; "))
    return f"instance runs PostgreSQL {_target(ctx)}{note}"


# --- failure: roll back, or report ----------------------------------------------------------------


def _passed(ctx: StepContext, name: str) -> bool:
    fresh = ctx.ports.store.get(operations.KIND, ctx.operation["id"]) or ctx.operation
    return any(s["name"] == name and s["status"] == "succeeded" for s in fresh.get("steps", []))


def _roll_back(ctx: StepContext) -> str:
    """Blue as it was: its directory back (if the swap moved it), started, taking writes;
    green destroyed and its port released."""
    engine, instance_id = ctx.ports.engine, ctx.resource_id
    record = _record(ctx)
    green = record.get("upgrade_green") or {}
    green_server = green.get("server_id") or green_id(instance_id)
    kept = kept_id(instance_id, _from(ctx))
    notes: list[str] = []
    swapped = engine.server_major_version(instance_id) != _from(ctx)
    if engine.server_major_version(instance_id) == _target(ctx):
        engine.stop(instance_id)
        notes.append(engine.rename_server(instance_id, green_server))
    if engine.server_major_version(instance_id) is None and engine.server_major_version(kept) == _from(ctx):
        notes.append(engine.rename_server(kept, instance_id))
    _update(ctx, version=_from(ctx), kept_blue=None)
    spec = instances.server_spec(_record(ctx))
    if swapped:  # green may have taken over the archiving, and blue's configuration names its paths
        archive.service.configure_step(INSTANCE)(ctx)
        spec = instances.server_spec(_record(ctx))
        engine.provision(spec)
    notes.append(f"blue {engine.start(spec)}")
    engine.set_read_only(instance_id, False)
    notes.append("blue takes writes")
    try:
        notes.append(engine.unsubscribe(green_server, instance_id))
    except EngineError as exc:  # green is destroyed next; blue's slots are what matters
        notes.append(f"replication not dropped cleanly ({exc})")
    notes.append(f"green {engine.destroy(green_server)}")
    if green.get("port"):
        ports_allocation.release(ctx.ports, int(green["port"]), green_server)
        _update(ctx, upgrade_green=None)
    return "; ".join(notes)


def _failed(ctx: StepContext, error: str) -> None:
    record = ctx.ports.store.get(INSTANCE.kind, ctx.resource_id)
    if record is None:
        return
    if _passed(ctx, POINT_OF_NO_RETURN):
        _report(ctx, phase="completed_with_errors", phase_reason=error)
        resources.set_status(
            ctx, INSTANCE, "running",
            f"upgraded to PostgreSQL {_target(ctx)} (blue/green), but a step after the cutover failed: {error}",
        )  # fmt: skip
        return
    try:
        done = _roll_back(ctx)
    except PgfleetError as exc:
        _report(ctx, phase="failed", phase_reason=f"{error}; blue could not be put back: {exc}")
        resources.set_status(
            ctx, INSTANCE, "failed",
            f"the blue/green upgrade to PostgreSQL {_target(ctx)} failed ({error}) and blue could not be put "
            f"back: {exc}",
        )  # fmt: skip
        return
    _report(ctx, phase="rolled_back", phase_reason=f"{error}; rolled back: {done}")
    resources.set_status(
        ctx, INSTANCE, "running",
        f"the blue/green upgrade to PostgreSQL {_target(ctx)} failed ({error}); rolled back: {done}; "
        f"PostgreSQL {_from(ctx)} serves reads and writes as before",
    )  # fmt: skip


# --- the kept blue server -------------------------------------------------------------------------


def _remove_leftovers(ctx: StepContext) -> str:
    """Delete of an instance: its kept blue server, and a green one a failed upgrade left."""
    record = ctx.ports.store.get(INSTANCE.kind, ctx.resource_id)
    if record is None:
        return "nothing kept"
    notes = []
    kept = record.get("kept_blue") or {}
    if kept.get("server_id"):
        notes.append(f"kept server {kept['server_id']} {ctx.ports.engine.destroy(kept['server_id'])}")
    green = record.get("upgrade_green") or {}
    server = green.get("server_id") or green_id(record["id"])
    if ctx.ports.engine.server_major_version(server) is not None:
        notes.append(f"green server {server} {ctx.ports.engine.destroy(server)}")
    if green.get("port"):
        ports_allocation.release(ctx.ports, int(green["port"]), server)
    return "; ".join(notes) or "no server kept by an upgrade"


def expire_kept(ports: Ports, now: datetime | None = None) -> list[str]:
    """Remove every kept blue server whose retention has passed (reconcile calls this)."""
    now = now or datetime.now(UTC)
    done: list[str] = []
    for record in resources.all_records(ports, INSTANCE.kind):
        kept = record.get("kept_blue") or {}
        if not kept.get("keep_until") or datetime.fromisoformat(kept["keep_until"]) > now:
            continue
        try:
            reason = ports.engine.destroy(kept["server_id"])
        except PgfleetError as exc:
            done.append(f"{record['id']}: kept server {kept['server_id']} not removed: {exc}")
            continue
        ports.store.update(INSTANCE.kind, record["id"], {"kept_blue": None, "updated_at": utcnow_iso()})
        done.append(
            f"{record['id']}: kept server {kept['server_id']} {reason} (kept until {kept['keep_until']})"
        )
    return done


STEPS: tuple[tuple[str, StepFn], ...] = (
    ("prepare_blue", _prepare_blue),
    ("reserve_green_port", _reserve_green),
    ("create_green", _create_green),
    ("subscribe", _subscribe),
    ("initial_copy", _initial_copy),
    ("prepare_cutover", _prepare_cutover),
    ("catch_up", _catch_up),
    # Writes are refused from here until start_on_endpoint: the steps between are short.
    ("refuse_writes", _refuse_writes),
    ("wait_applied", _wait_applied),
    ("copy_sequences", _copy_sequences),
    ("stop_replication", _stop_replication),
    ("swap_servers", _swap),
    (POINT_OF_NO_RETURN, _start_on_endpoint),
    ("verify", _verify),
    ("rebuild_replicas", _rebuild_replicas),
    ("release_green_port", _release_green_port),
    ("first_backup", _first_backup),
    ("mark_running", _mark),
)

WORKFLOWS: tuple[Workflow, ...] = (Workflow(workflow_type(instances.KIND, "blue_green"), STEPS, _failed),)
CASCADES: tuple[Cascade, ...] = (Cascade(instances.KIND, "upgrade_leftovers", _remove_leftovers),)
