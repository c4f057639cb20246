"""Maintenance tasks: records of kind `maintenance_task`, each with an EventBridge Scheduler
schedule (`pgfleet-maintenance-<task id>`, the task's cron in UTC) that fires it.

`cronExpression` is five Unix fields (`0 2 * * *`: minute hour day month weekday, 0 or 7 =
Sunday) or EventBridge's own `cron(min hour dom month dow year)`; both become EventBridge's
form, validated by the expression parser the local ticker runs on. A disabled task keeps its
schedule disabled (EventBridge's `State: DISABLED`), so the ticker does not fire it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pglast import parse_sql
from pglast.parser import ParseError

from pgfleet.core import schedule_expressions
from pgfleet.core.auth import PLATFORM, Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import NotFound, ValidationFailed
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains import servers, tenants
from pgfleet.domains.maintenance.models import TaskCreate, TaskUpdate
from pgfleet.ports.scheduler import Schedule

KIND = "maintenance_task"
ID_PREFIX = "mtk"
SCHEDULE_PREFIX = "pgfleet-maintenance-"
FIRE_TASK = "maintenance.task"
# What a task runs when it names neither taskSQL nor taskFunction.
DEFAULT_FUNCTIONS = {
    "VACUUM": "vacuum_bloated_tables",
    "ANALYZE": "analyze_stale_tables",
    "REINDEX": "reindex_bloated_indexes",
    "OPTIMIZE": "vacuum_bloated_tables,analyze_stale_tables,reindex_bloated_indexes",
    "CLEANUP": "cleanup_history",
    "BACKUP": "backup_full",
}
# taskSQL may not end or open a transaction: it runs in one of its own.
TRANSACTION_STATEMENTS = ("TransactionStmt",)


def schedule_name(task_id: str) -> str:
    return f"{SCHEDULE_PREFIX}{task_id}"


UNIX_DAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}


def _unix_day(text: str) -> int:
    if text.upper() in UNIX_DAYS:
        return UNIX_DAYS[text.upper()]
    if not text.isdigit() or int(text) > 7:
        raise schedule_expressions.ExpressionError(f"'{text}' is not a day of the week (0-7 or SUN-SAT)")
    return int(text) % 7


def _dow_to_aws(field: str) -> str:
    """A Unix weekday field (0-7, 0 and 7 = Sunday, names, ranges, steps) as the list of days in
    EventBridge's numbering (1-7, 1 = SUN); `*` is `?` (any)."""
    if field in ("*", "?"):
        return "?"
    days: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) < 1:
                raise schedule_expressions.ExpressionError(f"'{field}': the step after / must be at least 1")
            step = int(step_text)
        if part == "*":
            low, high = 0, 6
        elif "-" in part:
            a, b = part.split("-", 1)
            low, high = _unix_day(a), (7 if b.strip() == "7" else _unix_day(b))
            if high < low:
                raise schedule_expressions.ExpressionError(
                    f"'{part}': a range of days runs forward (e.g. 1-5)"
                )
        else:
            low = high = _unix_day(part)
        days.update(d % 7 for d in range(low, high + 1, step))
    return ",".join(str(d + 1) for d in sorted(days))


def aws_cron(expression: str) -> str:
    """The task's cron as EventBridge writes it; ValidationFailed (422) naming the field when
    it is neither form or does not parse."""
    text = expression.strip()
    try:
        if text.startswith("cron("):
            aws = text
            fields = aws[len("cron(") : -1].split()
            if len(fields) == 6 and "?" not in (fields[2], fields[4]):
                raise schedule_expressions.ExpressionError(
                    "EventBridge needs ? in the day-of-month or the day-of-week field"
                )
        else:
            fields = text.split()
            if len(fields) != 5:
                raise schedule_expressions.ExpressionError(
                    "give five fields (minute hour day-of-month month day-of-week) or cron(... six fields ...)"
                )
            minute, hour, dom, month, dow = fields
            if dom not in ("*", "?") and dow not in ("*", "?"):
                raise schedule_expressions.ExpressionError(
                    "EventBridge cannot run on a day of the month and a day of the week at once: set one to *"
                )
            aws_dow = _dow_to_aws(dow)
            aws_dom = "?" if aws_dow != "?" else ("*" if dom in ("*", "?") else dom)
            aws = f"cron({minute} {hour} {aws_dom} {month} {aws_dow} *)"
        schedule_expressions.validate(aws)
        if schedule_expressions.next_after(aws, datetime.now(UTC)) is None:
            raise schedule_expressions.ExpressionError("it never runs again")
    except (schedule_expressions.ExpressionError, ValueError, IndexError) as exc:
        raise ValidationFailed(
            f"schedule.cronExpression {expression!r} is not valid: {exc}",
            details=[{"field": "schedule.cronExpression", "message": str(exc)}],
        ) from None
    return aws


def check_task_sql(text: str) -> None:
    """One statement, no transaction control (COMMIT, ROLLBACK, BEGIN...): 422 otherwise."""
    try:
        statements = parse_sql(text)
    except ParseError as exc:
        raise ValidationFailed(
            f"taskSQL does not parse: {exc}", details=[{"field": "taskSQL", "message": "syntax error"}]
        ) from None
    if len(statements) != 1:
        raise ValidationFailed(
            f"taskSQL holds {len(statements)} statements: give exactly one",
            details=[{"field": "taskSQL", "message": "one statement"}],
        )
    node = statements[0].stmt
    name = type(node).__name__
    if name in TRANSACTION_STATEMENTS:
        raise ValidationFailed(
            "taskSQL may not control the transaction (COMMIT, ROLLBACK, BEGIN...): it runs in one of its own",
            details=[{"field": "taskSQL", "message": "transaction control"}],
        )
    if name in ("VacuumStmt", "ReindexStmt", "CreateDatabaseStmt", "DropdbStmt", "AlterSystemStmt"):
        raise ValidationFailed(
            f"taskSQL {name} cannot run inside a transaction: use taskType/taskFunction for it",
            details=[{"field": "taskSQL", "message": "not in a transaction"}],
        )


def _check_target(
    ports: Ports, caller: Principal, tenant: str, target_id: str | None, database: str | None
) -> None:
    if target_id is None:
        if database is not None:
            raise ValidationFailed("database needs a targetId", details={"field": "database"})
        return
    server = servers.get_visible(ports, caller, servers.kind_of(target_id), target_id)
    if server.record["tenant_id"] != tenant and tenant != PLATFORM:
        raise NotFound(f"{server.kind} {target_id} not found")
    own = str(server.record.get("database") or "postgres")
    if database is not None and database != own:
        names = {str(t.get("database_name")) for t in tenants.of_server(ports, target_id)}
        if database not in names:
            raise NotFound(
                f"database {database} is neither the app database nor a tenant database of {target_id}",
                details={"field": "database"},
            )


def _put_schedule(ports: Ports, record: dict[str, Any]) -> None:
    ports.scheduler.put(
        Schedule(
            schedule_name(record["id"]),
            record["schedule_expression"],
            {"task": FIRE_TASK, "task_id": record["id"]},
            enabled=bool(record["is_enabled"]),
        )
    )


def create(ports: Ports, caller: Principal, body: TaskCreate) -> dict[str, Any]:
    tenant = tenant_scope(caller, body.tenant_id) or caller.tenant_id
    if body.task_sql is not None and body.task_function is not None:
        raise ValidationFailed("give taskSQL or taskFunction, not both", details={"field": "taskSQL"})
    if body.task_sql is not None:
        check_task_sql(body.task_sql)
        if body.target_id is None:
            raise ValidationFailed("a task with taskSQL needs its targetId", details={"field": "targetId"})
    expression = aws_cron(body.schedule.cron_expression)
    _check_target(ports, caller, tenant, body.target_id, body.database)
    now = utcnow_iso()
    data = body.to_record()
    record = {
        **data, "id": new_id(ID_PREFIX), "tenant_id": tenant, "schedule_expression": expression,
        "created_at": now, "updated_at": now, "last_execution_id": None,
    }  # fmt: skip
    stored = ports.store.create(KIND, record)
    _put_schedule(ports, stored)
    return stored


def get(ports: Ports, caller: Principal, task_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, task_id)
    if record is None or not caller.sees_tenant(record["tenant_id"]):
        raise NotFound(f"maintenance task {task_id} not found")
    return record


def update(ports: Ports, caller: Principal, task_id: str, body: TaskUpdate) -> dict[str, Any]:
    record = get(ports, caller, task_id)
    changes = body.model_dump(mode="json", by_alias=False, exclude_unset=True)
    for key in ("schedule", "configuration"):
        if key in changes and changes[key] is None:
            raise ValidationFailed(f"{key} cannot be null", details={"field": key})
    if "schedule" in changes:
        changes["schedule_expression"] = aws_cron(changes["schedule"]["cron_expression"])
    if "is_enabled" in changes and changes["is_enabled"] is None:
        raise ValidationFailed("isEnabled cannot be null", details={"field": "isEnabled"})
    changes["updated_at"] = utcnow_iso()
    updated = ports.store.update(KIND, task_id, changes, record["revision"])
    _put_schedule(ports, updated)
    return updated


def delete(ports: Ports, caller: Principal, task_id: str) -> None:
    get(ports, caller, task_id)
    ports.scheduler.delete(schedule_name(task_id))
    ports.store.delete(KIND, task_id)


def scan(ports: Ports, tenant_id: str | None) -> list[dict[str, Any]]:
    return ports.store.every(KIND, tenant_id=tenant_id)


def visible(ports: Ports, caller: Principal, tenant_id: str | None) -> list[dict[str, Any]]:
    if not caller.is_platform_admin and tenant_id not in (None, caller.tenant_id):
        return []
    return scan(ports, tenant_scope(caller, tenant_id))


def functions_of(record: dict[str, Any]) -> list[str]:
    """The built-ins a task runs (none for a taskSQL task)."""
    if record.get("task_sql"):
        return []
    named = record.get("task_function") or DEFAULT_FUNCTIONS[record["task_type"]]
    return [f for f in str(named).split(",") if f]


def next_execution(record: dict[str, Any], now: datetime | None = None) -> datetime | None:
    if not record.get("is_enabled"):
        return None
    return schedule_expressions.next_after(record["schedule_expression"], now or datetime.now(UTC))
