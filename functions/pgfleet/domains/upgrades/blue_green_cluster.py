"""Blue/green major-version upgrade of a Patroni cluster (`cluster.upgrade.blue_green`).

Blue is the cluster. Green is a new Patroni cluster at the target version, `<id>-green`, with
the same node ids and count on ports of its own, made with blue's internal credentials, roles
and schema, and fed by native logical replication from blue's primary to green's leader (one
publication and subscription per database). The operation shows the replication on its
`detail` (`phase`, `tables_ready`/`tables_total`, `lag_bytes`), as the single-instance mode
does (`blue_green`).

Before the replication blue's primary needs wal_level=logical: when it is lower, the first
step sets it and restarts the primary once through Patroni (it stays the primary; about a
second without writes), as the pre-flight check says.

Once green has copied every table and caught up, the cutover runs on its own:
1. blue's primary refuses writes (read-only, its sessions ended);
2. green's leader has applied blue's WAL up to there, and has the same tables and columns;
3. sequences get blue's values;
4. the replication is dropped, both clusters stop, and their directories are swapped: blue
   becomes `<id>-blue<from>`, kept stopped, and green becomes `<id>` with blue's node ports and
   a fresh DCS state under blue's scope (its dynamic configuration kept);
5. green's leader starts alone on its node's port, then its replicas (already physical copies
   of it: nothing is cloned again) on theirs.

Why the swap rather than forwarding blue's ports to green (HAProxy, as a migration does): the
cluster keeps its id, its node ids and every node endpoint with the role behind it (a
replica's port still reaches a replica, the read-only URI still reads from a standby), and
its credentials (green was made with blue's passwords). Nothing stays in front of it.

A cutover not done within `cutover_timeout_seconds` of step 1, or any failure before green's
leader serves, rolls back: the directories swapped back if they moved, blue's old primary
started first, then its replicas, and writes allowed again; green is destroyed and its ports
released. After green's leader serves, the new version is the cluster and a later failure is
reported, never rolled back over writes green has taken.

Blue stays on disk, stopped, for `keep_old_hours` (the cluster's `kept_blue`): reconcile
removes it then, and deleting the cluster removes it with it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import leases, operations, resources
from pgfleet.core import port_allocation as ports_allocation
from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict, EngineError, NotFound, PgfleetError
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import Cascade, StepContext, StepFn, Workflow
from pgfleet.domains import archive, clusters
from pgfleet.domains.upgrades.common import COPY_FACTOR, COPY_HEADROOM_BYTES, workflow_type
from pgfleet.domains.upgrades.models import UpgradeCheckItem
from pgfleet.ports.cluster_engine import ClusterSpec, NodeSpec
from pgfleet.ports.engine import SubscriptionProgress

CLUSTER = clusters.CLUSTER
# After this step green's leader serves on the cluster's endpoints: no roll-back past it.
POINT_OF_NO_RETURN = "start_green_leader"
READY_LAG_BYTES = 1024 * 1024
INITIAL_COPY_TIMEOUT_S = 6 * 3600
CATCH_UP_TIMEOUT_S = 600
START_TIMEOUT_S = 120
POLL_S = 0.05
REPORT_EVERY_S = 2.0


def green_id(cluster_id: str) -> str:
    return f"{cluster_id}-green"


def kept_id(cluster_id: str, version: str) -> str:
    return f"{cluster_id}-blue{version}"


# --- pre-flight -----------------------------------------------------------------------------------


def checks(ports: Ports, record: dict[str, Any], target: str) -> list[UpgradeCheckItem]:
    """The logical replication prerequisites on the cluster's primary, the extensions of the
    target, free disk for a copy on every node. Changes nothing."""
    if record.get("standby_of"):
        return [
            UpgradeCheckItem(
                name="standby cluster", passed=False,
                detail="the cluster follows another server (a migration that has not cut over): its leader "
                "cannot publish; cut the migration over first",
            )
        ]  # fmt: skip
    try:
        ready = ports.cluster_engine.logical_readiness(record["id"], target)
    except EngineError as exc:
        return [UpgradeCheckItem(name="logical replication", passed=False, detail=str(exc))]
    mb = 1024 * 1024
    nodes = len(record["nodes"])
    need = int(ready.data_bytes * COPY_FACTOR) * nodes + COPY_HEADROOM_BYTES
    items = [
        _item("primary keys", ready.tables_without_key,
              "tables without a primary key or replica identity (their updates and deletes cannot be "
              "replicated; add a primary key or ALTER TABLE ... REPLICA IDENTITY FULL)",
              f"every table of {len(ready.databases)} database(s) has a primary key or a replica identity"),
        _item("unlogged tables", ready.unlogged_tables,
              "unlogged tables are not replicated (ALTER TABLE ... SET LOGGED, or drop them)",
              "no unlogged table"),
        _item("large objects", ready.large_objects, "large objects are not replicated", "no large object"),
        _item("ddl in flight", ready.ddl_in_flight,
              "schema changes in progress (ACCESS EXCLUSIVE locks; DDL is not replicated: finish them first, "
              "and change no schema during the upgrade)",
              "no schema change in progress"),
        _item("extensions", ready.missing_extensions,
              f"extensions not available in PostgreSQL {target}",
              f"every extension in use is available in PostgreSQL {target}"),
    ]  # fmt: skip
    items.append(
        UpgradeCheckItem(
            name="wal_level", passed=True,
            detail="wal_level is logical" if ready.wal_level == "logical" else
            f"wal_level is {ready.wal_level}: the upgrade sets it to logical and restarts the primary once "
            "before replicating (about a second without writes; it stays the primary)",
        )
    )  # fmt: skip
    needed = len(ready.databases)
    slots_ok = ready.free_slots >= needed and ready.free_wal_senders >= needed
    items.append(
        UpgradeCheckItem(
            name="replication slots", passed=slots_ok,
            detail=f"{needed} logical slot(s) and WAL sender(s) needed on the primary (one per database), "
            f"{ready.free_slots} slot(s) and {ready.free_wal_senders} sender(s) free",
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
            detail=f"{ready.free_bytes // mb} MB free; the green cluster of {nodes} node(s) needs {need // mb} MB "
            f"(data {ready.data_bytes // mb} MB per node)",
        )
    )  # fmt: skip
    return items


def _item(name: str, offenders: list[str], problem: str, passed: str) -> UpgradeCheckItem:
    if not offenders:
        return UpgradeCheckItem(name=name, passed=True, detail=passed)
    return UpgradeCheckItem(name=name, passed=False, detail=f"{problem}: {', '.join(offenders)}")


# --- helpers --------------------------------------------------------------------------------------


def _record(ctx: StepContext) -> dict[str, Any]:
    return resources.step_record(ctx, CLUSTER)


def _update(ctx: StepContext, **changes: Any) -> dict[str, Any]:
    record = _record(ctx)
    return ctx.ports.store.update(
        CLUSTER.kind, record["id"], {**changes, "updated_at": utcnow_iso()}, record["revision"]
    )


def _target(ctx: StepContext) -> str:
    return str(ctx.params["target_version"])


def _from(ctx: StepContext) -> str:
    return str(ctx.params["from_version"])


def _report(ctx: StepContext, **detail: Any) -> None:
    """operations.report, again when the lease heartbeat wrote the operation in between."""
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
        raise NotFound(f"the green cluster of {ctx.resource_id} has no ports reserved")
    return dict(green)


def _green_spec(ctx: StepContext) -> ClusterSpec:
    """Green before the cutover: the cluster's size, mode and settings at the target version,
    on its own ports, not archiving (it takes over the cluster's archiving at the cutover)."""
    record, green = _record(ctx), _green(ctx)
    return ClusterSpec(
        cluster_id=green["cluster_id"],
        version=_target(ctx),
        nodes=tuple(NodeSpec(n["id"], int(n["port"]), int(n["rest_port"])) for n in green["nodes"]),
        replication_mode=record["replication_mode"],
        cpu=record["cpu"],
        memory_mb=record["memory"],
        storage_gb=record["storage"],
        settings=dict(record.get("settings", {})),
    )


def _spec(ctx: StepContext) -> ClusterSpec:
    return clusters.cluster_spec(_record(ctx))


def _primary_of(ctx: StepContext, cluster_id: str) -> str | None:
    return next(
        (
            m.node_id
            for m in ctx.ports.cluster_engine.members(cluster_id)
            if m.role == "primary" and m.running
        ),
        None,
    )


def _parallel(fn: Any, items: list[Any]) -> list[str]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(fn, items))


def _deadline_passed(ctx: StepContext) -> None:
    deadline = _detail(ctx).get("cutover_deadline")
    if deadline is not None and time.time() > float(deadline):
        raise EngineError(
            f"the cutover did not finish within {ctx.params.get('cutover_timeout_seconds')} s of refusing writes"
        )


def _progress(ctx: StepContext) -> SubscriptionProgress:
    progress = ctx.ports.cluster_engine.subscription_progress(_green(ctx)["cluster_id"], ctx.resource_id)
    if progress.errors:
        raise EngineError("the logical replication failed: " + "; ".join(progress.errors))
    return progress


PHASE_REASONS = {
    "initial_copy": "green's leader copies the tables (then streams the changes); blue serves as before",
    "catching_up": "green streams blue's changes; the cutover begins once it is close behind",
}


def _report_progress(ctx: StepContext, phase: str, progress: SubscriptionProgress) -> None:
    _report(
        ctx, phase=phase, phase_reason=PHASE_REASONS[phase], lag_bytes=progress.lag_bytes,
        tables_ready=progress.tables_ready, tables_total=progress.tables_total,
    )  # fmt: skip


def _wait(ctx: StepContext, phase: str, timeout: float, done: Any) -> SubscriptionProgress:
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


# --- before the cutover ---------------------------------------------------------------------------


def _prepare_blue(ctx: StepContext) -> str:
    _report(ctx, phase="preparing", phase_reason="wal_level=logical on the cluster's primary")
    with leases.lease_kept(ctx):
        return ctx.ports.cluster_engine.enable_logical_decoding(_spec(ctx))


def _reserve_green(ctx: StepContext) -> str:
    record = _record(ctx)
    if record.get("upgrade_green"):
        return f"green cluster {record['upgrade_green']['cluster_id']} has its ports"
    cluster_id = green_id(record["id"])
    ids = [n["id"] for n in record["nodes"]]
    got = ports_allocation.reserve(ctx.ports, cluster_id, count=2 * len(ids))
    nodes = [{"id": nid, "port": got[2 * i], "rest_port": got[2 * i + 1]} for i, nid in enumerate(ids)]
    _update(ctx, upgrade_green={"cluster_id": cluster_id, "nodes": nodes})
    return f"reserved ports {', '.join(map(str, got))} for the green cluster {cluster_id}"


def _create_green(ctx: StepContext) -> str:
    _report(ctx, phase="creating_green", phase_reason="the green cluster gets the roles and schema")
    with leases.lease_kept(ctx):
        return ctx.ports.cluster_engine.provision_logical_copy(_green_spec(ctx), ctx.resource_id)


def _subscribe(ctx: StepContext) -> str:
    return ctx.ports.cluster_engine.subscribe(_green(ctx)["cluster_id"], ctx.resource_id)


def _initial_copy(ctx: StepContext) -> str:
    started = time.monotonic()
    progress = _wait(
        ctx, "initial_copy", INITIAL_COPY_TIMEOUT_S,
        lambda p: p.tables_ready == p.tables_total and p.confirmed_position is not None,
    )  # fmt: skip
    return f"{progress.tables_total} table(s) copied in {time.monotonic() - started:.1f}s; streaming"


def _prepare_cutover(ctx: StepContext) -> str:
    """Statistics on green (its tables were just filled), and checkpoints on both primaries so
    their shutdowns at the cutover are quick."""
    _report(ctx, phase="analyzing", phase_reason="planner statistics on the green cluster")
    engine, green = ctx.ports.cluster_engine, _green(ctx)["cluster_id"]
    with leases.lease_kept(ctx):
        analyzed = engine.after_upgrade(green)
        notes = [engine.checkpoint(green), engine.checkpoint(ctx.resource_id)]
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
    primary = detail.get("blue_primary") or _primary_of(ctx, ctx.resource_id)
    if primary is None:
        raise EngineError(f"cluster {ctx.resource_id} has no running primary")
    _report(ctx, blue_primary=primary, writes_refused_started=started, cutover_deadline=deadline)
    position = ctx.ports.cluster_engine.set_read_only(ctx.resource_id, True)
    _report(
        ctx, phase="cutting_over", phase_reason="writes refused on the primary; green applies the rest",
        final_position=position, writes_refused_at=detail.get("writes_refused_at") or utcnow_iso(),
    )  # fmt: skip
    return f"the primary {primary} refuses writes, its sessions ended; its last WAL position {position}"


def _wait_applied(ctx: StepContext) -> str:
    final = int(_detail(ctx)["final_position"])
    started = time.monotonic()
    engine = ctx.ports.cluster_engine
    with leases.lease_kept(ctx):
        while True:
            _deadline_passed(ctx)
            progress = _progress(ctx)
            if progress.confirmed_position is not None and progress.confirmed_position >= final:
                now = engine.wal_position(ctx.resource_id)  # a BEGIN READ WRITE may have written since
                if now <= final:
                    break
                final = now
            time.sleep(POLL_S)
    _report(ctx, lag_bytes=0, final_position=final)
    differences = engine.schema_differences(_green(ctx)["cluster_id"], ctx.resource_id)
    if differences:
        raise EngineError(
            f"the schema changed on the cluster during the upgrade ({len(differences)} difference(s): "
            f"{'; '.join(differences[:5])}); DDL is not replicated"
        )
    return f"green applied blue's WAL up to {final} in {time.monotonic() - started:.1f}s; the tables and columns match"


def _copy_sequences(ctx: StepContext) -> str:
    _deadline_passed(ctx)
    return ctx.ports.cluster_engine.copy_sequences(_green(ctx)["cluster_id"], ctx.resource_id)


def _stop_replication(ctx: StepContext) -> str:
    _deadline_passed(ctx)
    return ctx.ports.cluster_engine.unsubscribe(_green(ctx)["cluster_id"], ctx.resource_id)


def _swap(ctx: StepContext) -> str:
    """Both clusters stopped (in each, the replicas before the leader, so Patroni promotes
    none); green takes the cluster's id and node ports, blue is kept."""
    _deadline_passed(ctx)
    engine, cluster_id = ctx.ports.cluster_engine, ctx.resource_id
    record, green = _record(ctx), _green(ctx)["cluster_id"]
    kept = kept_id(cluster_id, _from(ctx))
    detail = _detail(ctx)
    leader = detail.get("green_leader") or _primary_of(ctx, green)
    if leader is None and engine.cluster_major_version(kept) is None:
        raise EngineError(f"the green cluster {green} has no running leader")
    if leader is not None:
        _report(ctx, green_leader=leader)
    blue_primary = str(detail.get("blue_primary"))
    if engine.cluster_major_version(kept) is None:  # not swapped yet
        # Each cluster's replicas before its leader: a replica that outlives its leader is
        # promoted by Patroni and forks the timeline (it could not follow the leader again).
        replicas = [(green, n["id"]) for n in _green(ctx)["nodes"] if n["id"] != leader]
        replicas += [(cluster_id, n["id"]) for n in record["nodes"] if n["id"] != blue_primary]
        _parallel(lambda node: engine.stop_node(*node), replicas)
        _parallel(lambda node: engine.stop_node(*node), [(green, str(leader)), (cluster_id, blue_primary)])
    spec = clusters.cluster_spec({**record, "version": _target(ctx)})
    swapped = engine.swap_clusters(spec, green, kept)
    if engine.cluster_major_version(cluster_id) != _target(ctx):
        raise EngineError(f"after the swap {cluster_id} holds no PostgreSQL {_target(ctx)} data")
    earlier = (record.get("kept_blue") or {}).get("cluster_id")
    if earlier and earlier != kept:  # the old cluster an earlier upgrade kept: superseded now
        swapped += f"; the cluster kept by an earlier upgrade, {earlier}, {engine.destroy(earlier)}"
    keep_until = datetime.now(UTC) + timedelta(hours=int(ctx.params.get("keep_old_hours", 24)))
    _update(
        ctx, version=_target(ctx),
        kept_blue={"cluster_id": kept, "version": _from(ctx), "keep_until": keep_until.isoformat()},
    )  # fmt: skip
    return f"stopped both clusters; {swapped}"


def _start_leader(ctx: StepContext) -> str:
    """Green takes over the cluster's archiving; its leader starts alone on its node's port."""
    _deadline_passed(ctx)
    archive.service.configure_step(CLUSTER)(ctx)
    spec = _spec(ctx)
    for node in spec.nodes:
        ctx.ports.cluster_engine.provision_node(spec, node)
    leader = str(_detail(ctx)["green_leader"])
    reason = ctx.ports.cluster_engine.start_leader(spec, leader, timeout=START_TIMEOUT_S)
    started = _detail(ctx).get("writes_refused_started")
    refused = round(time.time() - float(started), 1) if started else None
    _report(
        ctx, phase="verifying", writes_refused_seconds=refused,
        phase_reason=f"green's leader serves on {leader}'s endpoint ({refused} s after writes were refused)",
    )  # fmt: skip
    return f"PostgreSQL {_target(ctx)} {reason}; {refused} s after writes were refused"


# --- after the cutover ----------------------------------------------------------------------------


def _start_replicas(ctx: StepContext) -> str:
    spec = _spec(ctx)
    leader = str(_detail(ctx)["green_leader"])
    others = [n for n in spec.nodes if n.node_id != leader]
    _parallel(lambda node: ctx.ports.cluster_engine.start_node(spec, node), others)
    with leases.lease_kept(ctx):
        healthy = ctx.ports.cluster_engine.wait_until_healthy(spec, timeout=clusters.HEALTHY_TIMEOUT)
    return f"started {', '.join(n.node_id for n in others) or 'no replica'}; {healthy}"


def _verify(ctx: StepContext) -> str:
    record = _record(ctx)
    seen = {n["id"]: ctx.ports.cluster_engine.node_version(record["id"], n["id"]) for n in record["nodes"]}
    wrong = {k: v for k, v in seen.items() if v.split(".")[0] != _target(ctx)}
    if wrong:
        raise EngineError("nodes on another version: " + ", ".join(f"{k} {v}" for k, v in wrong.items()))
    created = clusters.create_database_step(ctx)
    return f"every node runs PostgreSQL {', '.join(sorted(set(seen.values())))}; {created}"


def _release_green_ports(ctx: StepContext) -> str:
    green = _record(ctx).get("upgrade_green")
    if not green:
        return "already released"
    _release(ctx.ports, green)
    _update(ctx, upgrade_green=None)
    return "released the green cluster's own ports (it serves on the cluster's)"


def _release(ports: Ports, green: dict[str, Any]) -> None:
    for n in green.get("nodes", []):
        for port in (n["port"], n["rest_port"]):
            ports_allocation.release(ports, int(port), green["cluster_id"])


def _first_backup(ctx: StepContext) -> str:
    record = _record(ctx)
    stanza = archive.service.create_stanza(ctx.ports, record)
    backup = archive.lifecycle.take_full_backup(ctx, record, "post-upgrade")
    return f"{stanza}; {backup}"


def _mark(ctx: StepContext) -> str:
    record = _record(ctx)
    detail = _detail(ctx)
    kept = record.get("kept_blue") or {}
    note = (
        f"upgraded blue/green from PostgreSQL {_from(ctx)} to {_target(ctx)} "
        f"({detail.get('writes_refused_seconds')} s of refused writes); the old cluster is kept stopped as "
        f"{kept.get('cluster_id')} until {kept.get('keep_until')}"
    )
    limits = ctx.ports.cluster_engine.apply_resources(clusters.cluster_spec(record))
    _report(ctx, phase="completed", phase_reason=note)
    clusters.refresh_topology(
        ctx.ports, record, status="running", status_reason=f"running; replicas streaming; {note}; {limits}",
        limits=limits,
    )  # fmt: skip
    return f"cluster runs PostgreSQL {_target(ctx)}; {note}"


# --- failure: roll back, or report ----------------------------------------------------------------


def _passed(ctx: StepContext, name: str) -> bool:
    fresh = ctx.ports.store.get(operations.KIND, ctx.operation["id"]) or ctx.operation
    return any(s["name"] == name and s["status"] == "succeeded" for s in fresh.get("steps", []))


def _roll_back(ctx: StepContext) -> str:
    """Blue as it was: its directories back (if the swap moved them), its old primary started
    first, then its replicas, writes allowed; green destroyed and its ports released."""
    engine, cluster_id = ctx.ports.cluster_engine, ctx.resource_id
    record = _record(ctx)
    green = record.get("upgrade_green") or {}
    green_cluster = green.get("cluster_id") or green_id(cluster_id)
    kept = kept_id(cluster_id, _from(ctx))
    notes: list[str] = []
    swapped = engine.cluster_major_version(kept) is not None
    if swapped:
        _parallel(lambda n: engine.stop_node(cluster_id, n["id"]), record["nodes"])
    if swapped or str(record["version"]) != _from(ctx):
        _update(ctx, version=_from(ctx), kept_blue=None)
        archive.service.configure_step(CLUSTER)(ctx)  # the archive settings of the old version
    spec = _spec(ctx)
    if swapped:
        notes.append(engine.unswap_clusters(spec, green_cluster, kept))
    primary = _detail(ctx).get("blue_primary")
    if _primary_of(ctx, cluster_id) is None and primary:
        for node in spec.nodes:
            engine.provision_node(spec, node)
        notes.append(engine.start_leader(spec, str(primary), timeout=START_TIMEOUT_S))
    _parallel(lambda node: engine.start_node(spec, node), list(spec.nodes))
    notes.append(engine.wait_until_healthy(spec, timeout=clusters.HEALTHY_TIMEOUT))
    engine.set_read_only(cluster_id, False)
    notes.append("blue takes writes")
    try:
        notes.append(engine.unsubscribe(green_cluster, cluster_id))
    except EngineError as exc:  # green is destroyed next; blue's slots are what matters
        notes.append(f"replication not dropped cleanly ({exc})")
    notes.append(f"green {engine.destroy(green_cluster)}")
    if green:
        _release(ctx.ports, green)
        _update(ctx, upgrade_green=None)
    return "; ".join(notes)


def _failed(ctx: StepContext, error: str) -> None:
    record = ctx.ports.store.get(CLUSTER.kind, ctx.resource_id)
    if record is None:
        return
    if _passed(ctx, POINT_OF_NO_RETURN):
        _report(ctx, phase="completed_with_errors", phase_reason=error)
        resources.set_status(
            ctx, CLUSTER, "running",
            f"upgraded to PostgreSQL {_target(ctx)} (blue/green), but a step after the cutover failed: {error}",
        )  # fmt: skip
        return
    try:
        done = _roll_back(ctx)
    except PgfleetError as exc:
        _report(ctx, phase="failed", phase_reason=f"{error}; blue could not be put back: {exc}")
        resources.set_status(
            ctx, CLUSTER, "failed",
            f"the blue/green upgrade to PostgreSQL {_target(ctx)} failed ({error}) and blue could not be put "
            f"back: {exc}",
        )  # fmt: skip
        return
    _report(ctx, phase="rolled_back", phase_reason=f"{error}; rolled back: {done}")
    clusters.refresh_topology(
        ctx.ports, _record(ctx), status="running",
        status_reason=f"the blue/green upgrade to PostgreSQL {_target(ctx)} failed ({error}); rolled back: "
        f"{done}; PostgreSQL {_from(ctx)} serves reads and writes as before",
    )  # fmt: skip


# --- the kept blue cluster ------------------------------------------------------------------------


def _remove_leftovers(ctx: StepContext) -> str:
    """Delete of a cluster: its kept blue cluster, and a green one a failed upgrade left."""
    record = ctx.ports.store.get(CLUSTER.kind, ctx.resource_id)
    if record is None:
        return "nothing kept"
    engine = ctx.ports.cluster_engine
    notes = []
    kept = record.get("kept_blue") or {}
    if kept.get("cluster_id"):
        notes.append(f"kept cluster {kept['cluster_id']} {engine.destroy(kept['cluster_id'])}")
    green = record.get("upgrade_green") or {}
    if green.get("cluster_id"):
        notes.append(f"green cluster {green['cluster_id']} {engine.destroy(green['cluster_id'])}")
        _release(ctx.ports, green)
    return "; ".join(notes) or "no cluster kept by an upgrade"


def expire_kept(ports: Ports, now: datetime | None = None) -> list[str]:
    """Remove every kept blue cluster whose retention has passed (reconcile calls this)."""
    now = now or datetime.now(UTC)
    done: list[str] = []
    for record in resources.all_records(ports, CLUSTER.kind):
        kept = record.get("kept_blue") or {}
        if not kept.get("keep_until") or datetime.fromisoformat(kept["keep_until"]) > now:
            continue
        try:
            reason = ports.cluster_engine.destroy(kept["cluster_id"])
        except PgfleetError as exc:
            done.append(f"{record['id']}: kept cluster {kept['cluster_id']} not removed: {exc}")
            continue
        ports.store.update(CLUSTER.kind, record["id"], {"kept_blue": None, "updated_at": utcnow_iso()})
        done.append(
            f"{record['id']}: kept cluster {kept['cluster_id']} {reason} (kept until {kept['keep_until']})"
        )
    return done


STEPS: tuple[tuple[str, StepFn], ...] = (
    ("prepare_blue", _prepare_blue),
    ("reserve_green_ports", _reserve_green),
    ("create_green", _create_green),
    ("subscribe", _subscribe),
    ("initial_copy", _initial_copy),
    ("prepare_cutover", _prepare_cutover),
    ("catch_up", _catch_up),
    # Writes are refused from here until start_green_leader: the steps between are short.
    ("refuse_writes", _refuse_writes),
    ("wait_applied", _wait_applied),
    ("copy_sequences", _copy_sequences),
    ("stop_replication", _stop_replication),
    ("swap_clusters", _swap),
    (POINT_OF_NO_RETURN, _start_leader),
    ("start_replicas", _start_replicas),
    ("verify", _verify),
    ("release_green_ports", _release_green_ports),
    ("first_backup", _first_backup),
    ("mark_running", _mark),
)

WORKFLOWS: tuple[Workflow, ...] = (Workflow(workflow_type(clusters.KIND, "blue_green"), STEPS, _failed),)
CASCADES: tuple[Cascade, ...] = (Cascade(clusters.KIND, "upgrade_leftovers", _remove_leftovers),)
