"""`GET /api/v1/maintenance/schedule` and `POST /api/v1/maintenance/schedule/optimize`.

Upcoming runs come from the tasks' real schedules (their EventBridge expressions), each with
the duration measured on its past runs (the median of its completed executions; DEFAULT_ESTIMATE
before its first). Conflicts over the horizon:
- RESOURCE: two tasks needing an exclusive lock on one server whose runs overlap; more runs at
  once than `maxConcurrentTasks`;
- TIME: a run outside its own window, or outside every active window of its tenant that
  allows its type (when the tenant has windows);
- DEPENDENCY: an ANALYZE or REINDEX of a server that runs before that server's VACUUM the same
  UTC day (statistics and indexes are best rebuilt after the dead tuples are gone).

Optimize proposes, for each task in conflict, the first time inside an allowed window (5-minute
steps) that is clear of exclusive overlap, concurrency and excluded ranges, in the order the
goal gives (MINIMIZE_IMPACT: most exclusive and longest first, then by priority; MAXIMIZE_EFFICIENCY:
earliest run first; BALANCE: priority), and applies the new cron only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import schedule_expressions
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import ValidationFailed
from pgfleet.domains.maintenance import executions, tasks, windows
from pgfleet.domains.maintenance.models import TaskUpdate

DEFAULT_ESTIMATE = 300.0
STEP = timedelta(minutes=5)
DEPENDS_ON_VACUUM = ("ANALYZE", "REINDEX")


@dataclass
class Run:
    task: dict[str, Any]
    at: datetime
    seconds: float
    measured: bool

    @property
    def end(self) -> datetime:
        return self.at + timedelta(seconds=self.seconds)

    @property
    def exclusive(self) -> bool:
        config = self.task.get("configuration") or {}
        return bool(config.get("requires_exclusive_lock")) or "VACUUM (FULL)" in str(
            self.task.get("task_sql") or ""
        )

    @property
    def scope(self) -> str:
        return str(self.task.get("target_id") or f"tenant:{self.task['tenant_id']}")


def estimate(ports: Ports, task: dict[str, Any]) -> tuple[float, bool]:
    measured = executions.median_duration(ports, task["id"])
    return (measured, True) if measured is not None else (DEFAULT_ESTIMATE, False)


def runs(ports: Ports, found: list[dict[str, Any]], now: datetime, horizon: timedelta) -> list[Run]:
    out = []
    for task in found:
        if not task.get("is_enabled"):
            continue
        seconds, measured = estimate(ports, task)
        at = now
        for _ in range(500):
            nxt = schedule_expressions.next_after(task["schedule_expression"], at)
            if nxt is None or nxt > now + horizon:
                break
            out.append(Run(task, nxt, seconds, measured))
            at = nxt
    return sorted(out, key=lambda r: (r.at, int(r.task.get("priority") or 5)))


def _same_server(a: Run, b: Run) -> bool:
    if a.task.get("target_id") and b.task.get("target_id"):
        return a.task["target_id"] == b.task["target_id"]
    return a.task["tenant_id"] == b.task["tenant_id"]  # a tenant-wide task reaches every server of it


def _allowed_spans(
    task: dict[str, Any], tenant_windows: list[dict[str, Any]], ids: list[str] | None = None
) -> list[windows.Span]:
    own = windows.task_span(task)
    if own is not None:
        return [own]
    return [
        windows.span_of(w) for w in tenant_windows
        if windows.allowed(w, task["task_type"]) and w["tenant_id"] in (task["tenant_id"], "*")
        and (not ids or w["id"] in ids)
    ]  # fmt: skip


def conflicts(
    runs_: list[Run], tenant_windows: list[dict[str, Any]], max_concurrent: int
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()

    def add(kind: str, ids: list[str], description: str, resolution: str) -> None:
        key = (kind, *sorted(set(ids)))
        if key not in seen:
            seen.add(key)
            found.append({"conflict_type": kind, "affected_tasks": sorted(set(ids)), "description": description,
                          "suggested_resolution": resolution})  # fmt: skip

    for i, a in enumerate(runs_):
        overlapping = [
            b for b in runs_[i + 1 :] if b.at < a.end and a.at < b.end and b.task["id"] != a.task["id"]
        ]
        for b in overlapping:
            if (a.exclusive or b.exclusive) and _same_server(a, b):
                add("RESOURCE", [a.task["id"], b.task["id"]],
                    f"{a.task['task_name']} and {b.task['task_name']} both run on {a.scope} from "
                    f"{executions.iso(max(a.at, b.at))} and one needs an exclusive lock",
                    "move one of them (schedule/optimize proposes a time)")  # fmt: skip
        concurrent = [b for b in runs_ if b.at <= a.at < b.end]
        if len(concurrent) > max_concurrent:
            add("RESOURCE", [b.task["id"] for b in concurrent],
                f"{len(concurrent)} tasks run at once at {executions.iso(a.at)}, more than maxConcurrentTasks {max_concurrent}",
                "spread them over the window (schedule/optimize)")  # fmt: skip
        spans = _allowed_spans(a.task, tenant_windows)
        has_windows = bool(windows.task_span(a.task)) or any(
            w["tenant_id"] in (a.task["tenant_id"], "*") for w in tenant_windows
        )
        if has_windows and not any(s.contains(a.at) for s in spans):
            add("TIME", [a.task["id"]],
                f"{a.task['task_name']} is scheduled at {executions.iso(a.at)}, outside every maintenance window that allows {a.task['task_type']}",
                "move it into a window (schedule/optimize), or execute it with overrideSchedule")  # fmt: skip
        if a.task["task_type"] in DEPENDS_ON_VACUUM:
            for b in runs_:
                if (
                    b.task["task_type"] == "VACUUM"
                    and _same_server(a, b)
                    and a.at < b.at
                    and a.at.date() == b.at.date()
                ):
                    add("DEPENDENCY", [a.task["id"], b.task["id"]],
                        f"{a.task['task_name']} ({a.task['task_type']}) runs at {executions.iso(a.at)}, before "
                        f"{b.task['task_name']} (VACUUM) of the same server at {executions.iso(b.at)}",
                        "run the VACUUM first")  # fmt: skip
    return found


def dependencies(task: dict[str, Any], found: list[dict[str, Any]]) -> list[str]:
    if task["task_type"] not in DEPENDS_ON_VACUUM:
        return []
    return [t["id"] for t in found if t["task_type"] == "VACUUM" and t["id"] != task["id"]
            and (t.get("target_id") == task.get("target_id") or not t.get("target_id") or not task.get("target_id"))
            and t["tenant_id"] == task["tenant_id"]]  # fmt: skip


def scheduled_view(run: Run, found: list[dict[str, Any]]) -> dict[str, Any]:
    limits = (run.task.get("configuration") or {}).get("resource_limits") or {}
    return {
        "task_id": run.task["id"], "task_name": run.task["task_name"], "scheduled_time": executions.iso(run.at),
        "estimated_duration": run.seconds, "estimated_from": "executions" if run.measured else "default",
        "priority": int(run.task.get("priority") or 5),
        "resource_requirements": {
            "exclusive_lock": run.exclusive, "cpu_limit_percent": limits.get("cpu_limit_percent"),
            "memory_limit_mb": limits.get("memory_limit_mb"), "io_limit_mbps": limits.get("io_limit_mbps"),
            "targets": [run.task["target_id"]] if run.task.get("target_id") else [],
        },
        "dependencies": dependencies(run.task, found),
    }  # fmt: skip


def window_view(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "window_id": record["id"]}


def read(
    ports: Ports, caller: Principal, tenant_id: str | None, hours: int, max_concurrent: int
) -> dict[str, Any]:
    now = datetime.now(UTC)
    found = tasks.visible(ports, caller, tenant_id)
    tenant_windows = windows.visible(ports, caller, tenant_id)
    upcoming = runs(ports, found, now, timedelta(hours=hours))
    return {
        "upcoming_tasks": [scheduled_view(r, found) for r in upcoming[:200]],
        "maintenance_windows": [window_view(w) for w in tenant_windows],
        "conflicts": conflicts(upcoming, tenant_windows, max_concurrent),
    }


def _cron_at(task: dict[str, Any], at: datetime) -> str:
    """The task's cron with the time of day (or minute, for HOURLY) of `at`, its days kept."""
    fields = schedule_expressions_fields(task["schedule_expression"])
    minute, hour, dom, month, dow, year = fields
    frequency = (task.get("schedule") or {}).get("frequency")
    if frequency == "HOURLY":
        return f"cron({at.minute} {hour} {dom} {month} {dow} {year})"
    return f"cron({at.minute} {at.hour} {dom} {month} {dow} {year})"


def schedule_expressions_fields(expression: str) -> list[str]:
    return expression.strip()[len("cron(") : -1].split()


def optimize(ports: Ports, caller: Principal, body: Any) -> dict[str, Any]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    horizon = timedelta(hours=body.time_horizon)
    found = tasks.visible(ports, caller, None)
    tenant_windows = windows.visible(ports, caller, None)
    max_concurrent = body.constraints.max_concurrent_tasks
    before_runs = runs(ports, found, now, horizon)
    before = conflicts(before_runs, tenant_windows, max_concurrent)
    in_conflict = {tid for c in before for tid in c["affected_tasks"]}
    excluded = []
    for n, r in enumerate(body.constraints.excluded_time_ranges):
        try:
            start, end = executions.parse(r.start), executions.parse(r.end)
        except ValueError:
            raise ValidationFailed(
                f"constraints.excludedTimeRanges[{n}]: start and end are ISO 8601 times",
                details={"field": f"constraints.excludedTimeRanges.{n}"},
            ) from None
        if start is None or end is None:
            raise ValidationFailed(
                f"constraints.excludedTimeRanges[{n}]: give start and end",
                details={"field": f"constraints.excludedTimeRanges.{n}"},
            )
        start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
        if end <= start:
            raise ValidationFailed(
                f"constraints.excludedTimeRanges[{n}]: its end is not after its start",
                details={"field": f"constraints.excludedTimeRanges.{n}"},
            )
        excluded.append((start, end))
    movable = [t for t in found if t["id"] in in_conflict and t.get("is_enabled")
               and str(t.get("schedule_expression", "")).startswith("cron(")]  # fmt: skip
    fixed = [r for r in before_runs if r.task["id"] not in {t["id"] for t in movable}]
    goal = body.optimization_goal

    def order(task: dict[str, Any]) -> tuple[Any, ...]:
        seconds, _ = estimate(ports, task)
        exclusive = bool((task.get("configuration") or {}).get("requires_exclusive_lock"))
        if goal == "MINIMIZE_IMPACT":
            return (not exclusive, -seconds, int(task.get("priority") or 5))
        if goal == "MAXIMIZE_EFFICIENCY":
            first = next((r.at for r in before_runs if r.task["id"] == task["id"]), now + horizon)
            return (first, int(task.get("priority") or 5))
        return (int(task.get("priority") or 5), -seconds)

    placed: list[Run] = list(fixed)
    changes, unresolved = [], []
    for task in sorted(movable, key=order):
        seconds, measured = estimate(ports, task)
        spans = _allowed_spans(task, tenant_windows, body.constraints.maintenance_windows or None)
        if not spans:
            spans = [windows.Span.of("00:00", "23:59")]
        slot = None
        t = now + STEP
        limit = now + min(horizon, timedelta(hours=24))
        while t < limit and slot is None:
            candidate = Run(task, t, seconds, measured)
            inside = any(s.contains(t) and s.contains(candidate.end - timedelta(seconds=1)) for s in spans)
            clear = inside and not any(
                a is not None and b is not None and t < b and a < candidate.end for a, b in excluded
            )
            if clear:
                overlapping = [r for r in placed if r.at < candidate.end and t < r.end]
                if len(overlapping) + 1 <= max_concurrent and not any(
                    (r.exclusive or candidate.exclusive) and _same_server(r, candidate) for r in overlapping
                ):
                    slot = t
            t += STEP
        if slot is None:
            unresolved.append(
                f"{task['id']} ({task['task_name']}): no free time inside its windows within the horizon"
            )
            placed += [r for r in before_runs if r.task["id"] == task["id"]]
            continue
        cron = _cron_at(task, slot)
        new_task = {**task, "schedule_expression": cron}
        placed += runs(ports, [new_task], now, horizon)
        span = next((s for s in spans if s.contains(slot)), None)
        changes.append({
            "task_id": task["id"], "task_name": task["task_name"],
            "current_cron_expression": task["schedule_expression"], "proposed_cron_expression": cron,
            "proposed_time": executions.iso(slot), "window_id": span.window_id if span else None,
            "reason": f"clear of the conflicts it was in, inside {'its window' if span else 'the day'}; "
                      f"{seconds:.0f} s {'measured' if measured else 'assumed'}",
        })  # fmt: skip
    after = conflicts(sorted(placed, key=lambda r: r.at), tenant_windows, max_concurrent)
    if body.apply:
        for change in changes:
            stored = ports.store.get(tasks.KIND, change["task_id"])
            if stored is None:
                continue
            schedule = {**stored["schedule"], "cron_expression": change["proposed_cron_expression"]}
            tasks.update(ports, caller, stored["id"], TaskUpdate.model_validate({"schedule": schedule}))
    return {
        "optimization_goal": goal, "applied": bool(body.apply and changes), "changes": changes,
        "conflicts_before": before, "conflicts_after": after, "unresolved": unresolved,
    }  # fmt: skip
