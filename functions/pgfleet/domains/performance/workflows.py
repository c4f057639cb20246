"""`POST /api/v1/performance/indexes/optimize`: apply index recommendations as an Operation,
now or at a time (an EventBridge Scheduler `at()` schedule that starts it).

Steps (each idempotent, each saying what it did):
- `measure_before`: the statement's planned cost and its pg_stat_statements counters (calls,
  total time) before anything changes;
- `apply`: CREATE INDEX CONCURRENTLY / DROP INDEX CONCURRENTLY / REINDEX INDEX CONCURRENTLY
  through the SQL seam (autocommit: none of them can run in a transaction), with the
  request's lock_timeout. A concurrent build that fails leaves an INVALID index behind: it is
  dropped (DROP INDEX CONCURRENTLY) before the error is reported. A resumed step finds an
  index it built by its name and does not build it twice;
- `verify`: EXPLAIN of the statement again: whether its plan uses the new index, its planned
  cost now, and its mean execution time over the calls since the build (pg_stat_statements
  deltas; null until it has run), recorded on the recommendation as `measured`.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any

from psycopg import sql as pgsql

from pgfleet.core import operations
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, ValidationFailed
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.domains import servers
from pgfleet.domains.performance import index_advice, indexes
from pgfleet.domains.performance import sql_indexes as q
from pgfleet.ports.scheduler import Schedule
from pgfleet.ports.sql import SqlSession

log = logging.getLogger(__name__)

OPTIMIZE = "performance.indexes.optimize"
TASK = "performance.indexes.optimize"
BUILD_TIMEOUT_MS = 14 * 60 * 1000  # under a Lambda's 15 minutes
SCHEDULE_PREFIX = "pgfleet-index-optimize-"


def _recommendations(ctx: StepContext) -> list[dict[str, Any]]:
    record = ctx.ports.store.get(indexes.KIND, ctx.params["record_id"])
    recs = (record or {}).get("recommendations") or {}
    return [
        indexes.expanded(record, rid, recs[rid])
        for rid in ctx.params["recommendations"]
        if record and rid in recs
    ]


def _database(ctx: StepContext) -> str:
    return str(ctx.params["record_id"].split(":", 1)[1])


def _statements_schema(ctx: StepContext) -> str | None:
    for database in dict.fromkeys((indexes.STATEMENTS_DATABASE, _database(ctx))):
        with ctx.ports.sql.session(ctx.resource_id, database=database) as session:
            row = session.fetch_one(q.STATEMENTS_SCHEMA)
            if row:
                return f"{database}\x1f{row[0]}"
    return None


def _counters(ctx: StepContext, where: str | None, query_id: str) -> tuple[int, float] | None:
    if where is None:
        return None
    database, schema = where.split("\x1f")
    with ctx.ports.sql.session(ctx.resource_id, database=database) as session:
        row = session.fetch_one(
            pgsql.SQL(q.STATEMENT_MEAN).format(schema=pgsql.Identifier(schema)), (query_id, _database(ctx))
        )
    return (int(row[0]), float(row[1])) if row and row[0] is not None else None


def _plan(ctx: StepContext, rec: dict[str, Any]) -> index_advice.Plan:
    """The statement's generic plan now, in a session of the database's own login."""
    text = rec["benefit"]["query_text"]
    _, params = index_advice.parse_statement(text)
    server = servers.get(ctx.ports, servers.kind_of(ctx.resource_id), ctx.resource_id)
    if server is None:
        raise InvalidState(f"{ctx.resource_id} no longer exists")
    with indexes.customer_sessions(ctx.ports, servers.Target(server), _database(ctx))() as session:
        return index_advice.Planner(session, text, params).explain()


def _measure_before(ctx: StepContext) -> str:
    where = _statements_schema(ctx)
    lines = []
    for rec in _recommendations(ctx):
        if rec["type"] != "CREATE" or (rec.get("measured") or {}).get("before_counters") is not None:
            continue
        plan = _plan(ctx, rec)
        counters = _counters(ctx, where, rec["benefit"]["query_id"])
        mean = counters[1] / counters[0] if counters and counters[0] else None
        indexes.update_recommendation(ctx.ports, ctx.params["record_id"], rec["id"], status="APPLYING", measured={
            "before_counters": list(counters) if counters else None, "cost_before": plan.cost,
            "mean_time_ms_before": round(mean, 4) if mean is not None else None,
        })  # fmt: skip
        lines.append(
            f"{rec['id']}: cost {plan.cost:.1f}, mean {mean or 0:.3f} ms over {counters[0] if counters else 0} calls"
        )
    return "; ".join(lines) or "nothing to measure (no CREATE)"


def _valid(session: SqlSession, schema: str, name: str) -> bool | None:
    row = session.fetch_one(q.INVALID_INDEX, (schema, name))
    return None if row is None else bool(row[0])


def _drop_invalid(session: SqlSession, schema: str, name: str) -> str:
    if _valid(session, schema, name) is False:
        session.execute(pgsql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
            pgsql.Identifier(schema), pgsql.Identifier(name)))  # fmt: skip
        return f"dropped the invalid index {name} the failed build left"
    return ""


def _create(session: SqlSession, rec: dict[str, Any]) -> str:
    schema, name = rec["schema_name"], rec["index_name"]
    state = _valid(session, schema, name)
    if state is True:
        return f"{name} exists and is valid: nothing to build"
    if state is False:
        _drop_invalid(session, schema, name)
    statement = pgsql.SQL("CREATE INDEX CONCURRENTLY {} ON {}.{} USING btree ({})").format(
        pgsql.Identifier(name), pgsql.Identifier(schema), pgsql.Identifier(rec["table_name"]),
        pgsql.SQL(", ").join(pgsql.Identifier(c) for c in rec["columns"]),
    )  # fmt: skip
    try:
        session.execute(statement)
    except EngineError as exc:
        cleaned = _drop_invalid(session, schema, name)
        raise EngineError(f"building {name} failed: {exc}" + (f"; {cleaned}" if cleaned else "")) from exc
    return f"built {name} concurrently"


def _reindex(session: SqlSession, rec: dict[str, Any]) -> str:
    schema, name = rec["schema_name"], rec["index_name"]
    if _valid(session, schema, name) is None:
        return f"{name} no longer exists: nothing to rebuild"
    leftover = f"{name}_ccnew"
    _drop_invalid(session, schema, leftover)
    try:
        session.execute(pgsql.SQL("REINDEX INDEX CONCURRENTLY {}.{}").format(
            pgsql.Identifier(schema), pgsql.Identifier(name)))  # fmt: skip
    except EngineError as exc:
        cleaned = _drop_invalid(session, schema, leftover)
        raise EngineError(f"rebuilding {name} failed: {exc}" + (f"; {cleaned}" if cleaned else "")) from exc
    return f"rebuilt {name} concurrently"


def _drop(session: SqlSession, rec: dict[str, Any]) -> str:
    schema, name = rec["schema_name"], rec["index_name"]
    if _valid(session, schema, name) is None:
        return f"{name} is already gone"
    session.execute(pgsql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
        pgsql.Identifier(schema), pgsql.Identifier(name)))  # fmt: skip
    return f"dropped {name} concurrently"


ACTIONS = {"CREATE": _create, "REBUILD": _reindex, "DROP": _drop}


def _apply(ctx: StepContext) -> str:
    lines = []
    with ctx.ports.sql.session(
        ctx.resource_id, database=_database(ctx), statement_timeout_ms=BUILD_TIMEOUT_MS,
        lock_timeout_ms=int(ctx.params.get("lock_timeout_ms") or 5000),
    ) as session:  # fmt: skip
        for rec in _recommendations(ctx):
            try:
                lines.append(f"{rec['id']}: {ACTIONS[rec['type']](session, rec)}")
            except EngineError as exc:
                indexes.update_recommendation(ctx.ports, ctx.params["record_id"], rec["id"], status="FAILED")
                raise EngineError(f"{rec['id']}: {exc}") from exc
            if rec["type"] != "CREATE":
                indexes.update_recommendation(ctx.ports, ctx.params["record_id"], rec["id"], status="APPLIED")
    return "; ".join(lines) or "no recommendation left to apply"


def measured_after(ports: Ports, record: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    """`measured` with the mean time over the calls since the build, from the counters now."""
    measured = dict(rec.get("measured") or {})
    base = measured.get("after_counters")
    ctx = StepContext(ports, {"resource_id": record["parent_id"], "params": {"record_id": record["id"]}})
    now = _counters(ctx, _statements_schema(ctx), rec["benefit"]["query_id"]) if base else None
    if base and now and now[0] > base[0]:
        calls, total = now[0] - base[0], now[1] - base[1]
        measured.update(mean_time_ms_after=round(total / calls, 4), sample_runs=calls)
        before = measured.get("mean_time_ms_before")
        if before and total > 0:
            measured["improvement_factor"] = round(before / (total / calls), 2)
    return measured


def _verify(ctx: StepContext) -> str:
    where = _statements_schema(ctx)
    lines = []
    for rec in _recommendations(ctx):
        if rec["type"] != "CREATE":
            continue
        plan = _plan(ctx, rec)
        counters = _counters(ctx, where, rec["benefit"]["query_id"])
        uses = rec["index_name"] in plan.index_names
        measured = {
            **(rec.get("measured") or {}), "measured_at": utcnow_iso(), "plan_uses_index": uses,
            "cost_after": plan.cost, "after_counters": list(counters) if counters else None,
            "mean_time_ms_after": None, "sample_runs": 0, "improvement_factor": None,
        }  # fmt: skip
        indexes.update_recommendation(
            ctx.ports, ctx.params["record_id"], rec["id"], status="APPLIED", measured=measured
        )
        lines.append(
            f"{rec['id']}: the plan {'uses' if uses else 'does NOT use'} {rec['index_name']}; cost "
            f"{measured.get('cost_before') or 0:.1f} -> {plan.cost:.1f}"
        )
    return "; ".join(lines) or "nothing to verify (no CREATE)"


def _failed(ctx: StepContext, error: str) -> None:
    for rec in _recommendations(ctx):
        if rec.get("status") == "APPLYING":
            indexes.update_recommendation(ctx.ports, ctx.params["record_id"], rec["id"], status="FAILED")


WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        OPTIMIZE, (("measure_before", _measure_before), ("apply", _apply), ("verify", _verify)), _failed
    ),
)


# --- starting it: now, or from a schedule -----------------------------------------------------------


def start(ports: Ports, record: dict[str, Any], rec_ids: list[str], lock_timeout_ms: int) -> dict[str, Any]:
    params = {"record_id": record["id"], "recommendations": rec_ids, "lock_timeout_ms": lock_timeout_ms}
    op = operations.new_operation(OPTIMIZE, record["parent_id"], record["tenant_id"], params)
    return operations.submit(ports, op)


def window_start(start: str, end: str, now: datetime) -> datetime:
    """The next moment inside the daily UTC window [start, end): now when inside it."""
    begin, finish = dt_time.fromisoformat(start), dt_time.fromisoformat(end)
    today = datetime.combine(now.date(), begin, UTC)
    inside = (
        (begin <= now.time() < finish) if begin < finish else (now.time() >= begin or now.time() < finish)
    )
    if inside:
        return now
    return today if today > now else today + timedelta(days=1)


def schedule(
    ports: Ports, record: dict[str, Any], rec_ids: list[str], lock_timeout_ms: int, at: datetime,
    window: tuple[str, str] | None,
) -> str:  # fmt: skip
    """An at() schedule that starts the operation; its name."""
    at = at.astimezone(UTC).replace(microsecond=0)
    digest = hashlib.sha256(
        f"{record['id']}|{','.join(sorted(rec_ids))}|{at.isoformat()}".encode()
    ).hexdigest()[:12]
    name = f"{SCHEDULE_PREFIX}{digest}"
    payload = {
        "task": TASK, "record_id": record["id"], "recommendations": rec_ids, "lock_timeout_ms": lock_timeout_ms,
        "schedule_name": name, "window": list(window) if window else None,
    }  # fmt: skip
    ports.scheduler.put(Schedule(name, f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})", payload))
    return name


def parse_when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationFailed(
            f"scheduleFor {text!r} is not an ISO 8601 time", details={"field": "scheduleFor"}
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def scheduled_start(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """The task an at() schedule fires: start the operation (once), then remove the schedule."""
    name = str(detail.get("schedule_name") or "")
    record = ports.store.get(indexes.KIND, str(detail.get("record_id")))
    lines = []
    window = detail.get("window")
    now = datetime.now(UTC)
    if window and window_start(window[0], window[1], now) != now:
        lines.append(f"{name}: outside the maintenance window {window[0]}-{window[1]}: not started")
    elif record is None:
        lines.append(f"{name}: the recommendations of {detail.get('record_id')} are gone: not started")
    else:
        op = start(
            ports,
            record,
            list(detail.get("recommendations") or []),
            int(detail.get("lock_timeout_ms") or 5000),
        )
        lines.append(f"{name}: started operation {op['id']}")
    if name:
        ports.scheduler.delete(name)
    return lines


TASKS = {TASK: scheduled_start}
