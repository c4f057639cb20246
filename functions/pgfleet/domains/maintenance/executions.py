"""Maintenance executions: records of kind `maintenance_execution`, run by the worker as an
operation (`maintenance.run`, one step) so a run survives the API call that started it.

A run:
- chooses its objects when it starts (plan.py: the statistics then, not when it was asked);
- runs each statement in a privileged session of the SQL seam on the target database, with
  `statement_timeout` = the time left of `maxExecutionTime` (or optimize's `maxDuration`) and
  `lock_timeout` (LOCK_TIMEOUT_MS, shorter with `requiresExclusiveLock`); a statement that
  waits past it is retried `retryAttempts` times, `retryDelay` minutes apart; a task's own
  `taskSQL` runs as the database's app role, in a transaction of its own (committed);
- applies `resourceLimits`: `vacuum_cost_limit` / `vacuum_cost_delay` from `ioLimitMBPS`
  (page misses at vacuum_cost_page_miss each; the delay is the tenant's `vacuumCostDelayMs`),
  `maintenance_work_mem` from `memoryLimitMB` (else the tenant's `maintenanceWorkMemMB`, when
  it set one: section MAINTENANCE of the system configuration), and, where the host allows, a cgroup of the backend's own for CPU and I/O; the execution
  lists what was applied;
- measures: sizes before and after each relation (`spaceReclaimed`), dead tuples removed
  (`rowsAffected` of a VACUUM) or the rows a taskSQL wrote; `progress` from
  pg_stat_progress_vacuum / _create_index / _cluster; the backend's CPU, memory and storage I/O
  from /proc with peaks (`resourceUsage`), and `performanceImpact`, the backend's share of the
  server's CPU time over the run;
- waits for its window: outside it, the execution stays INITIATED with `scheduledFor`, an
  EventBridge `at()` schedule starts it when the window opens (unless `overrideSchedule`), and
  no new statement starts once the window (or the duration) is over.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import statistics
import threading
import time
from datetime import UTC, datetime
from typing import Any

from pgfleet.core import operations, tenant_settings
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict, EngineError, InvalidState, NotFound
from pgfleet.core.leases import lease_kept
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.domains import backups, monitoring, notifications, performance, servers
from pgfleet.domains.maintenance import cleanup, plan, tasks, windows
from pgfleet.domains.maintenance import sql as q
from pgfleet.ports.scheduler import Schedule
from pgfleet.ports.sql import StatementCancelled

log = logging.getLogger("pgfleet.maintenance")

KIND = "maintenance_execution"
ID_PREFIX = "mex"
RUN = "maintenance.run"
START_TASK = "maintenance.execution"
START_PREFIX = "pgfleet-maintenance-start-"
LOCK_TIMEOUT_MS = 5_000
EXCLUSIVE_LOCK_TIMEOUT_MS = 2_000
SAMPLE_SECONDS = 0.5
PROGRESS_WRITE_SECONDS = 2.0
MAX_RUN_MINUTES = 14.0  # under a Lambda's 15 minutes
TERMINAL = ("COMPLETED", "FAILED")
# vacuum_cost_delay used with an I/O limit, and what one page miss costs (PostgreSQL 14+).
COST_DELAY_MS = 2
PAGE_MISS_COST = 2
PAGE_BYTES = 8192
BACKUP_WAIT_SECONDS = 600


def iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z") if when else None


def parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


# --- records ----------------------------------------------------------------------------------


def get(ports: Ports, caller: Principal, execution_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, execution_id)
    if record is None or not caller.sees_tenant(record["tenant_id"]):
        raise NotFound(f"maintenance execution {execution_id} not found")
    return record


def _update(ports: Ports, execution_id: str, **changes: Any) -> dict[str, Any]:
    """Write changes to an execution, whatever its revision (the run is its only writer but
    for the sampler's progress, which retries)."""
    for _ in range(10):
        record = ports.store.get(KIND, execution_id)
        if record is None:
            raise NotFound(f"maintenance execution {execution_id} not found")
        try:
            return ports.store.update(KIND, execution_id, changes, record["revision"])
        except Conflict:
            time.sleep(0.05)
    raise Conflict(f"maintenance execution {execution_id} kept changing")


def new_record(
    tenant_id: str, *, kind: str, name: str, task: dict[str, Any] | None, targets: list[str], triggered_by: str | None,
    dry_run: bool, settings: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    now = utcnow_iso()
    return {
        "id": new_id(ID_PREFIX), "tenant_id": tenant_id, "parent_id": task["id"] if task else None,
        "task_id": task["id"] if task else None, "task_name": name,
        "task_type": task["task_type"] if task else settings.get("optimization_type"), "kind": kind,
        "target_id": targets[0] if len(targets) == 1 else None, "targets": targets, "status": "INITIATED",
        "triggered_by": triggered_by, "dry_run": dry_run, "scheduled_for": None, "start_time": None,
        "end_time": None, "duration": None, "progress": 0.0, "current_object": None, "rows_affected": None,
        "space_reclaimed": None, "error_message": None, "performance_impact": None, "resource_usage": {},
        "resource_limits_applied": [], "attempts": 0, "statements": [], "operation_id": None,
        "settings": settings, "created_at": now, "updated_at": now,
    }  # fmt: skip


def task_settings(task: dict[str, Any]) -> dict[str, Any]:
    config = task.get("configuration") or {}
    return {
        "functions": tasks.functions_of(task), "task_sql": task.get("task_sql"), "database": task.get("database"),
        "max_minutes": min(MAX_RUN_MINUTES, float(config.get("max_execution_time") or 10)),
        "retry_attempts": int(config.get("retry_attempts") or 0), "retry_delay": float(config.get("retry_delay") or 0),
        "requires_exclusive_lock": bool(config.get("requires_exclusive_lock")),
        "resource_limits": config.get("resource_limits") or {},
        "notification_settings": config.get("notification_settings") or {},
        "window": (task.get("schedule") or {}).get("maintenance_window"), "allow_vacuum_full": False,
    }  # fmt: skip


# --- targets ------------------------------------------------------------------------------------


def task_targets(ports: Ports, tenant_id: str, target_id: str | None) -> list[servers.Target]:
    """The servers a run works on: its target, or every running server of its tenant (every
    server for the platform's own tasks)."""
    if target_id is not None:
        server = servers.get(ports, servers.kind_of(target_id), target_id)
        if server is None:
            raise NotFound(f"{target_id} no longer exists")
        return [servers.Target(server)]
    scope = None if tenant_id == "*" else tenant_id
    return [t for t in (servers.Target(s) for s in servers.all_servers(ports, scope)) if t.running]


def _database(ports: Ports, target: servers.Target, database: str | None) -> str:
    return performance.database_of(ports, target, database)


def plan_items(ports: Ports, record: dict[str, Any]) -> list[plan.Item]:
    """What the run would do now (dry run) or does (the run itself)."""
    settings = record["settings"]
    found: list[plan.Item] = []
    functions = list(settings.get("functions") or [])
    for target_id in record["targets"]:
        target = task_targets(ports, record["tenant_id"], target_id)[0]
        if not target.running:
            raise InvalidState(
                f"{target_id} is {target.server.record.get('status')}: maintenance runs only while it runs",
                details={"status": target.server.record.get("status")},
            )
        database = _database(ports, target, settings.get("database"))
        if settings.get("task_sql"):
            found.append(plan.Item("SQL", target_id, database, None, None, "the task's own SQL, as the database's app role",
                                   sql=settings["task_sql"]))  # fmt: skip
            continue
        in_sql = [f for f in functions if f not in ("cleanup_history", "backup_full")]
        if in_sql:
            with ports.sql.session(
                target_id, database=database, statement_timeout_ms=plan.PLAN_STATEMENT_TIMEOUT_MS
            ) as s:
                found += plan.choose(
                    s, target_id, database, in_sql, allow_full=bool(settings.get("allow_vacuum_full")),
                    bloated_from=performance.bloat_threshold(ports, target.tenant_id),
                )  # fmt: skip
        if "backup_full" in functions:
            found.append(
                plan.Item("BACKUP", target_id, None, None, None, "a full backup (the server's backup tool)")
            )
    if "cleanup_history" in functions:
        found.append(plan.Item("CLEANUP", record["targets"][0] if record["targets"] else "", None, None, None,
                               "monitoring history past its retention (cleanup/data MONITORING)"))  # fmt: skip
    return found


# --- starting ---------------------------------------------------------------------------------------


def median_duration(ports: Ports, task_id: str) -> float | None:
    records, _ = ports.store.page(
        KIND, parent_id=task_id, filters={"status": "COMPLETED", "dry_run": False}, page=1, page_size=20
    )
    durations = [float(r["duration"]) for r in records if r.get("duration") is not None]
    return round(statistics.median(durations), 3) if durations else None


def start(
    ports: Ports, record: dict[str, Any], *, override: bool, now: datetime | None = None
) -> dict[str, Any]:
    """Store the execution and start it: now (an operation), or when its window opens (an at()
    schedule). A dry run is planned and stored COMPLETED at once, changing nothing."""
    now = now or datetime.now(UTC)
    if record["dry_run"]:
        items = plan_items(ports, record)
        record.update(status="COMPLETED", statements=[i.to_record() for i in items], start_time=iso(now),
                      end_time=iso(datetime.now(UTC)), progress=100.0)  # fmt: skip
        record["duration"] = round((datetime.now(UTC) - now).total_seconds(), 3)
        return ports.store.create(KIND, record)
    window = record["settings"].get("window")
    span = windows.Span.of(window["start"], window["end"]) if window else None
    if span is not None and not override and not span.contains(now):
        opens = span.next_open(now)
        assert opens is not None
        record["scheduled_for"] = iso(opens)
        stored = ports.store.create(KIND, record)
        name = f"{START_PREFIX}{hashlib.sha256(stored['id'].encode()).hexdigest()[:16]}"
        ports.scheduler.put(
            Schedule(name, f"at({opens.strftime('%Y-%m-%dT%H:%M:%S')})",
                     {"task": START_TASK, "execution_id": stored["id"], "schedule_name": name})
        )  # fmt: skip
        return stored
    if override and window:
        record["settings"] = {**record["settings"], "window": None}  # the window does not stop it either
    op = operations.new_operation(RUN, record["id"], record["tenant_id"], {"execution_id": record["id"]})
    record["operation_id"] = op["id"]
    stored = ports.store.create(KIND, record)
    operations.submit(ports, op)
    return stored


def execute_task(
    ports: Ports, task: dict[str, Any], *, triggered_by: str | None, override: bool, dry_run: bool
) -> dict[str, Any]:
    if not task.get("is_enabled") and not override and not dry_run:
        raise InvalidState(
            f"maintenance task {task['id']} is disabled: enable it, or execute with overrideSchedule",
            details={"isEnabled": False},
        )
    targets = [t.target_id for t in task_targets(ports, task["tenant_id"], task.get("target_id"))]
    if task.get("target_id") is None and not targets and tasks.functions_of(task) != ["cleanup_history"]:
        raise InvalidState(f"maintenance task {task['id']}: no running server in its scope")
    record = new_record(
        task["tenant_id"], kind="task", name=task["task_name"], task=task, targets=targets,
        triggered_by=triggered_by, dry_run=dry_run, settings=task_settings(task),
    )  # fmt: skip
    stored = start(ports, record, override=override)
    if not dry_run:
        with contextlib.suppress(Conflict, NotFound):
            fresh = ports.store.get(tasks.KIND, task["id"])
            if fresh is not None:
                ports.store.update(
                    tasks.KIND, task["id"], {"last_execution_id": stored["id"]}, fresh["revision"]
                )
    return stored


def fire_task(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """A task's cron schedule fired."""
    task = ports.store.get(tasks.KIND, str(detail.get("task_id")))
    if task is None:
        return [f"maintenance task {detail.get('task_id')} is gone: nothing run"]
    if not task.get("is_enabled"):
        return [f"maintenance task {task['id']} is disabled: not run"]
    try:
        record = execute_task(ports, task, triggered_by="schedule", override=False, dry_run=False)
    except (InvalidState, NotFound, EngineError) as exc:
        return [f"maintenance task {task['id']}: not run ({exc})"]
    when = f"waits for its window at {record['scheduled_for']}" if record["scheduled_for"] else "started"
    return [f"maintenance task {task['id']}: execution {record['id']} {when}"]


def start_waiting(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """The at() schedule of an execution that waited for its window."""
    name = str(detail.get("schedule_name") or "")
    record = ports.store.get(KIND, str(detail.get("execution_id")))
    lines = []
    if record is None or record["status"] != "INITIATED" or record.get("operation_id"):
        lines.append(f"{name}: execution {detail.get('execution_id')} is gone or started")
    else:
        op = operations.new_operation(RUN, record["id"], record["tenant_id"], {"execution_id": record["id"]})
        _update(ports, record["id"], operation_id=op["id"])
        operations.submit(ports, op)
        lines.append(f"{name}: execution {record['id']} started (operation {op['id']})")
    if name:
        ports.scheduler.delete(name)
    return lines


# --- measuring ------------------------------------------------------------------------------------


class Sampler:
    """Polls one backend while its statements run: /proc counters (CPU, memory, storage I/O),
    the progress views, and writes the execution's progress every PROGRESS_WRITE_SECONDS."""

    def __init__(
        self, ports: Ports, execution_id: str, target: servers.Target, pid: int, data_directory: str
    ) -> None:
        self.ports, self.execution_id, self.target = ports, execution_id, target
        self.pid, self.data_directory = pid, data_directory
        self.first = monitoring.backend_usage(pid, data_directory)
        self.last = self.first
        self.started = time.monotonic()
        self._last_at = self.started
        self.peak_cpu = 0.0
        self.peak_io = 0.0
        self.memory: list[float] = []
        self.fraction = 0.0  # of the current statement, from the progress views
        self.done = 0
        self.total = 1
        self.current: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"maintenance-{execution_id}", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def progress(self) -> float:
        return round(100.0 * min(1.0, (self.done + self.fraction) / max(1, self.total)), 1)

    def _sample(self) -> None:
        now = monitoring.backend_usage(self.pid, self.data_directory)
        previous, at = self.last, time.monotonic()
        if now is None:
            return
        if previous is not None:
            span = max(1e-3, at - self._last_at)
            self.peak_cpu = max(self.peak_cpu, 100.0 * (now.cpu_seconds - previous.cpu_seconds) / span)
            if now.io_bytes is not None and previous.io_bytes is not None:
                self.peak_io = max(self.peak_io, (now.io_bytes - previous.io_bytes) / 1048576 / span)
        self.memory.append(now.memory_bytes / 1048576)
        self.last, self._last_at = now, at

    def _progress_of_current(self, session: Any) -> None:
        for query in (q.PROGRESS_VACUUM, q.PROGRESS_INDEX, q.PROGRESS_CLUSTER):
            row = session.fetch_one(query, (self.pid,))
            if row:
                total, done = row[1], row[2]
                if total:
                    self.fraction = min(1.0, float(done or 0) / float(total))
                return

    def _loop(self) -> None:
        written = 0.0
        try:
            with self.ports.sql.session(
                self.target.target_id, statement_timeout_ms=2_000, lock_timeout_ms=500
            ) as s:
                while not self._stop.wait(SAMPLE_SECONDS):
                    self._sample()
                    with contextlib.suppress(EngineError):
                        self._progress_of_current(s)
                    if time.monotonic() - written >= PROGRESS_WRITE_SECONDS:
                        written = time.monotonic()
                        with contextlib.suppress(Exception):
                            _update(
                                self.ports,
                                self.execution_id,
                                progress=self.progress(),
                                current_object=self.current,
                            )
        except Exception:  # the sampler never fails the run
            log.exception("maintenance execution %s: the sampler stopped", self.execution_id)

    def usage(self) -> dict[str, Any]:
        if self.first is None or self.last is None:
            return {"source": None}
        wall = max(1e-3, time.monotonic() - self.started)
        cpu = self.last.cpu_seconds - self.first.cpu_seconds
        io = (
            (self.last.io_bytes - self.first.io_bytes) / 1048576
            if self.last.io_bytes is not None and self.first.io_bytes is not None
            else None
        )
        return {
            "cpu_usage_percent": round(100.0 * cpu / wall, 2),
            "memory_usage_mb": round(statistics.mean(self.memory), 2) if self.memory else None,
            "disk_io_mb": round(io, 3) if io is not None else None,
            "peak_values": {
                "cpu": round(max(self.peak_cpu, 100.0 * cpu / wall), 2),
                "memory": round(max(self.memory), 2) if self.memory else None,
                "disk_io": round(self.peak_io, 3),
            },
            "source": "proc",
            "cpu_seconds": round(cpu, 3),
            "wall_seconds": round(wall, 3),
        }

    def impact(self) -> float | None:
        """The backend's share (0-100) of the server's CPU time over the run."""
        if self.first is None or self.last is None:
            return None
        server = (self.last.server.cpu_seconds or 0.0) - (self.first.server.cpu_seconds or 0.0)
        own = self.last.cpu_seconds - self.first.cpu_seconds
        if self.first.server.cpu_seconds is None or server <= 0:
            return None
        return round(min(100.0, 100.0 * own / server), 1)


# --- running ---------------------------------------------------------------------------------------


def tenant_defaults(ports: Ports, tenant_id: str | None) -> dict[str, Any]:
    """What the tenant set for its maintenance runs (section MAINTENANCE of the system
    configuration): `vacuum_cost_delay_ms` (COST_DELAY_MS unless set) and
    `maintenance_work_mem_mb` (None: the server's own, unless set)."""
    chosen = tenant_settings.overrides(ports, tenant_id, "maintenance")
    return {
        "vacuum_cost_delay_ms": int(chosen.get("vacuum_cost_delay_ms", COST_DELAY_MS)),
        "maintenance_work_mem_mb": chosen.get("maintenance_work_mem_mb"),
    }


def _limits(
    settings: dict[str, Any], defaults: dict[str, Any] | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """The session settings `resourceLimits` become (the tenant's defaults where the run sets
    none), and what each means."""
    limits = settings.get("resource_limits") or {}
    defaults = defaults or {}
    delay = int(defaults.get("vacuum_cost_delay_ms") or COST_DELAY_MS)
    out: list[tuple[str, str]] = []
    said = []
    io = limits.get("io_limit_mbps")
    if io:
        pages_per_second = io * 1048576 / PAGE_BYTES
        cost_limit = max(1, min(10_000, round(pages_per_second * PAGE_MISS_COST * delay / 1000)))
        out += [("vacuum_cost_delay", str(delay)), ("vacuum_cost_limit", str(cost_limit))]
        said.append(
            f"vacuum_cost_limit {cost_limit} with vacuum_cost_delay {delay} ms (~{io:g} MB/s of page reads)"
        )
    memory = limits.get("memory_limit_mb") or defaults.get("maintenance_work_mem_mb")
    if memory:
        out.append(("maintenance_work_mem", f"{max(1, int(memory))}MB"))
        said.append(f"maintenance_work_mem {int(memory)} MB")
    return out, said


def _relation(session: Any, item: plan.Item) -> tuple[int | None, int | None]:
    row = session.fetch_one(q.RELATION, (item.schema, item.name))
    return (int(row[0]), int(row[1]) if row[1] is not None else None) if row else (None, None)


def _run_statement(
    ports: Ports, item: plan.Item, settings: dict[str, Any], deadline: float, execution_id: str,
    limits_said: list[str], usage: list[Sampler],
) -> dict[str, Any]:  # fmt: skip
    exclusive = bool(settings.get("requires_exclusive_lock")) or item.exclusive
    lock_ms = EXCLUSIVE_LOCK_TIMEOUT_MS if exclusive else LOCK_TIMEOUT_MS
    attempts_left = int(settings.get("retry_attempts") or 0)
    result: dict[str, Any] = {"status": "FAILED", "attempts": 0}
    while True:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms < 1000:
            result.update(status="SKIPPED", error="the run's time (maxExecutionTime / maxDuration) was up")
            return result
        result["attempts"] += 1
        started = time.monotonic()
        try:
            if item.action == "SQL":
                result.update(_customer_sql(ports, item, remaining_ms, lock_ms))
            else:
                result.update(
                    _platform_statement(
                        ports, item, settings, remaining_ms, lock_ms, execution_id, limits_said, usage
                    )
                )
            result["status"] = "COMPLETED"
            result["duration"] = round(time.monotonic() - started, 3)
            return result
        except StatementCancelled as exc:
            waited_for_lock = "lock_timeout" in str(exc)
            result.update(error=str(exc), duration=round(time.monotonic() - started, 3))
            if not waited_for_lock or attempts_left <= 0:
                return result
            attempts_left -= 1
            delay = float(settings.get("retry_delay") or 0) * 60
            if time.monotonic() + delay >= deadline:
                return result
            time.sleep(delay)
        except (EngineError, InvalidState) as exc:
            result.update(error=str(exc), duration=round(time.monotonic() - started, 3))
            return result


def _customer_sql(ports: Ports, item: plan.Item, remaining_ms: int, lock_ms: int) -> dict[str, Any]:
    target = task_targets(ports, "*", item.target_id)[0]
    opened = performance.customer_sessions(
        ports,
        target,
        item.database or "",
        statement_timeout_ms=remaining_ms,
        lock_timeout_ms=lock_ms,
        commit=True,
    )
    with opened() as session:
        session.execute(item.sql)  # type: ignore[arg-type]  # the customer's own text, as its own role
        rows = session.rowcount
    return {"rows": rows if rows >= 0 else None}


def _platform_statement(
    ports: Ports, item: plan.Item, settings: dict[str, Any], remaining_ms: int, lock_ms: int, execution_id: str,
    limits_said: list[str], usage: list[Sampler],
) -> dict[str, Any]:  # fmt: skip
    target = task_targets(ports, "*", item.target_id)[0]
    with ports.sql.session(item.target_id, database=item.database, statement_timeout_ms=remaining_ms,
                           lock_timeout_ms=lock_ms) as session:  # fmt: skip
        pid, data_directory = session.fetch_one(q.BACKEND) or (None, None)
        set_limits, said = _limits(settings, tenant_defaults(ports, target.tenant_id))
        for name, value in set_limits:
            session.execute(q.SET_CONFIG, (name, value))
        cpu = (settings.get("resource_limits") or {}).get("cpu_limit_percent")
        io = (settings.get("resource_limits") or {}).get("io_limit_mbps")
        applied: list[str] = []
        missed: list[str] = []
        if (cpu or io) and target.server.kind == "instance":
            applied, missed = ports.engine.limit_backend(item.target_id, int(pid), cpu, io)
        elif cpu or io:
            missed = ["CPU and I/O cgroups are applied to single instances' backends only (a cluster node's "
                      "backends stay in Patroni's group)"]  # fmt: skip
        for line in [*said, *applied] + [f"not applied: {m}" for m in missed]:
            if line not in limits_said:
                limits_said.append(line)
        before_size, before_dead = _relation(session, item)
        sampler = Sampler(ports, execution_id, target, int(pid), str(data_directory))
        sampler.total, sampler.current = 1, f"{item.schema}.{item.name}"
        try:
            with sampler:
                session.execute(plan.composed(item.action, item.schema, item.name))
        finally:
            usage.append(sampler)
            if applied:
                ports.engine.release_backend(item.target_id, int(pid))
        after_size, after_dead = _relation(session, item)
    out: dict[str, Any] = {"size_before": before_size, "size_after": after_size}
    if before_size is not None and after_size is not None:
        out["space_reclaimed"] = before_size - after_size
    if item.action == "VACUUM_FULL" and before_dead is not None:
        out["rows"] = before_dead  # the rewrite copies the live rows only (its statistics keep the old count)
    elif item.action.startswith("VACUUM") and before_dead is not None and after_dead is not None:
        out["rows"] = max(0, before_dead - after_dead)
    return out


def _backup(ports: Ports, item: plan.Item, deadline: float) -> dict[str, Any]:
    server = task_targets(ports, "*", item.target_id)[0].server
    busy = backups.active_backup(ports, server.id)
    record = busy or backups.start_backup(
        ports, server.record, "full", trigger="maintenance", created_by=None
    )
    while time.monotonic() < min(deadline, time.monotonic() + BACKUP_WAIT_SECONDS):
        fresh = ports.store.get("backup", record["id"]) or {}
        if fresh.get("status") in ("completed", "failed"):
            if fresh["status"] == "failed":
                return {"status": "FAILED", "error": f"backup {record['id']} failed: {fresh.get('error')}"}
            return {"status": "COMPLETED", "backup_id": record["id"], "size_after": fresh.get("size_bytes")}
        time.sleep(1)
    return {"status": "FAILED", "error": f"backup {record['id']} did not finish within the run's time"}


def run(ports: Ports, execution_id: str) -> str:
    record = ports.store.get(KIND, execution_id)
    if record is None:
        return f"execution {execution_id} is gone"
    if record["status"] in TERMINAL:
        return f"execution {execution_id} already {record['status']}"
    settings = record["settings"]
    started_at = datetime.now(UTC)
    clock0 = time.monotonic()
    deadline = clock0 + float(settings.get("max_minutes") or MAX_RUN_MINUTES) * 60
    window = settings.get("window")
    if window:
        span = windows.Span.of(window["start"], window["end"])
        closes = span.end_after(started_at)
        if closes is None:  # started late (a queue, a schedule): wait for the next opening again
            return _wait_again(ports, record, span, started_at)
        deadline = min(deadline, clock0 + (closes - started_at).total_seconds())
    record = _update(ports, execution_id, status="RUNNING", start_time=iso(started_at))
    try:
        items = plan_items(ports, record)
    except (EngineError, InvalidState, NotFound) as exc:
        return finish(ports, execution_id, started_at, [], [], [], error=f"planning failed: {exc}")
    planned = [i.to_record() for i in items]
    _update(ports, execution_id, statements=planned, progress=0.0)
    limits_said: list[str] = []
    usage: list[Sampler] = []
    for n, item in enumerate(items):
        if item.action == "CLEANUP":
            result = cleanup.for_task(ports, record["tenant_id"])
        elif item.action == "BACKUP":
            result = _backup(ports, item, deadline)
        else:
            result = _run_statement(ports, item, settings, deadline, execution_id, limits_said, usage)
        planned[n] = {**planned[n], **result}
        _update(ports, execution_id, statements=planned, progress=round(100.0 * (n + 1) / len(items), 1),
                current_object=None, resource_limits_applied=limits_said)  # fmt: skip
    return finish(ports, execution_id, started_at, planned, limits_said, usage)


def _wait_again(ports: Ports, record: dict[str, Any], span: windows.Span, now: datetime) -> str:
    opens = span.next_open(now)
    assert opens is not None
    name = f"{START_PREFIX}{hashlib.sha256((record['id'] + str(iso(opens))).encode()).hexdigest()[:16]}"
    _update(ports, record["id"], scheduled_for=iso(opens), operation_id=None)
    ports.scheduler.put(
        Schedule(name, f"at({opens.strftime('%Y-%m-%dT%H:%M:%S')})",
                 {"task": START_TASK, "execution_id": record["id"], "schedule_name": name})
    )  # fmt: skip
    return f"execution {record['id']}: its window had closed when it started; waits for {iso(opens)}"


def finish(
    ports: Ports, execution_id: str, started_at: datetime, statements: list[dict[str, Any]], limits_said: list[str],
    usage: list[Sampler], error: str | None = None,
) -> str:  # fmt: skip
    ended = datetime.now(UTC)
    failed = [s for s in statements if s.get("status") == "FAILED"]
    skipped = [s for s in statements if s.get("status") == "SKIPPED"]
    rows = [s["rows"] for s in statements if s.get("rows") is not None]
    reclaimed = [s["space_reclaimed"] for s in statements if s.get("space_reclaimed") is not None]
    if error is None and failed:
        error = "; ".join(
            f"{s.get('schema') or s.get('target_id')}.{s.get('name') or s['action']}: {s.get('error')}"
            for s in failed[:5]
        )
    if error is None and skipped:
        error = f"{len(skipped)} statement(s) not started: the run's time or window was up"
    measured = [u.usage() for u in usage]
    measured = [m for m in measured if m.get("source")]
    resource: dict[str, Any] = {"source": None, "peak_values": {}}
    if measured:
        wall = sum(m["wall_seconds"] for m in measured) or 1e-3
        cpu = sum(m["cpu_seconds"] for m in measured)
        mem = [m["memory_usage_mb"] for m in measured if m["memory_usage_mb"] is not None]
        io = [m["disk_io_mb"] for m in measured if m["disk_io_mb"] is not None]
        resource = {
            "cpu_usage_percent": round(100.0 * cpu / wall, 2),
            "memory_usage_mb": round(statistics.mean(mem), 2) if mem else None,
            "disk_io_mb": round(sum(io), 3) if io else None,
            "peak_values": {
                "cpu": max(m["peak_values"]["cpu"] for m in measured),
                "memory": max((m["peak_values"]["memory"] or 0) for m in measured) or None,
                "disk_io": max(m["peak_values"]["disk_io"] for m in measured),
            },
            "source": "proc",
        }
    impacts = [i for i in (u.impact() for u in usage) if i is not None]
    status = "FAILED" if (failed or (error and not statements)) else "COMPLETED"
    if status == "COMPLETED" and skipped and not [s for s in statements if s.get("status") == "COMPLETED"]:
        status = "FAILED"
    record = _update(
        ports, execution_id, status=status, end_time=iso(ended),
        duration=round((ended - started_at).total_seconds(), 3), progress=100.0 if status == "COMPLETED" else None,
        rows_affected=sum(rows) if rows else (0 if statements and not failed else None),
        space_reclaimed=sum(reclaimed) if reclaimed else None, error_message=error,
        performance_impact=round(statistics.mean(impacts), 1) if impacts else None,
        resource_usage=resource, resource_limits_applied=limits_said,
        attempts=max([int(s.get("attempts") or 0) for s in statements] or [0]),
    )  # fmt: skip
    _notify(ports, record)
    return f"execution {execution_id} {status}: {len(statements)} statement(s), {len(failed)} failed"


def _notify(ports: Ports, record: dict[str, Any]) -> None:
    settings = (record.get("settings") or {}).get("notification_settings") or {}
    ok = record["status"] == "COMPLETED"
    if (
        not (settings.get("on_success") if ok else settings.get("on_failure", True))
        or record.get("kind") != "task"
    ):
        return
    text = (
        f"{record['task_name']} {record['status'].lower()} in {record.get('duration') or 0:.1f} s"
        f"; rows {record.get('rows_affected')}, space reclaimed {record.get('space_reclaimed')} bytes"
        + (f"; {record['error_message']}" if record.get("error_message") else "")
    )
    alert = {
        "id": record["id"], "tenant_id": record["tenant_id"], "parent_id": record.get("target_id"),
        "alert_name": f"maintenance {record['task_name']} {record['status']}", "severity": "LOW" if ok else "HIGH",
        "status": "RESOLVED" if ok else "ACTIVE", "category": "MAINTENANCE", "description": text,
    }  # fmt: skip
    recipients = settings.get("recipients") or None
    for line in notifications.notify(ports, alert, "resolved" if ok else "triggered", only=recipients):
        log.info("%s", line)


def _run_step(ctx: StepContext) -> str:
    with lease_kept(ctx):  # a run may outlast the operation's lease (LEASE_SECONDS)
        return run(ctx.ports, str(ctx.params["execution_id"]))


def _failed(ctx: StepContext, error: str) -> None:
    record = ctx.ports.store.get(KIND, str(ctx.params.get("execution_id")))
    if record is not None and record["status"] not in TERMINAL:
        _update(
            ctx.ports, record["id"], status="FAILED", error_message=error, end_time=iso(datetime.now(UTC))
        )


WORKFLOWS = (Workflow(RUN, (("run", _run_step),), _failed),)


def in_progress(ports: Ports, tenant_id: str | None) -> list[str]:
    """What maintenance runs now (a tenant's, or every tenant's when None): one line each, for
    `system/status` (MAINTENANCE)."""
    records, _ = ports.store.page(
        KIND, tenant_id=tenant_id, filters={"status": "RUNNING"}, page=1, page_size=20
    )
    return [
        f"maintenance {r['task_name']} ({r['id']}) runs on {', '.join(r.get('targets') or []) or 'its scope'}"
        for r in records
    ]
