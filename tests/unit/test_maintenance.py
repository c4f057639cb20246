"""The maintenance domain without a server: cron translation, taskSQL checks, window
arithmetic, the request models, schedule conflicts and their optimization, data cleanup on
the history store, and the plan chosen from table statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from pgfleet.core.auth import PLATFORM, Principal
from pgfleet.core.errors import ValidationFailed
from pgfleet.domains.maintenance import cleanup, plan, schedule, tasks, windows
from pgfleet.domains.maintenance.models import (
    DataCleanupRequest,
    ScheduleOptimizeRequest,
    TaskSchedule,
    TimeWindow,
    WindowCreate,
)
from pgfleet.ports.history import HistoryRecord
from pgfleet.ports.sql import SqlSession
from tests.unit.fakes import FakePorts

ADMIN = Principal(sub="admin", tenant_id=PLATFORM, roles=("admin",), permissions=frozenset({PLATFORM}))
TARGET = "pgi-000000000001"
# A Monday, midnight UTC: every daily run of the next 24 hours falls on it.
MONDAY = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


def _fields(exc: ValidationFailed) -> list[str]:
    details = exc.details
    items = details if isinstance(details, list) else [details]
    return [d["field"] for d in items]


# --- tasks.aws_cron -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unix", "aws"),
    [
        ("0 2 * * *", "cron(0 2 * * ? *)"),
        ("30 1 * * 0", "cron(30 1 ? * 1 *)"),
        ("0 3 * * 1-5", "cron(0 3 ? * 2,3,4,5,6 *)"),
        ("0 3 * * 0-7", "cron(0 3 ? * 1,2,3,4,5,6,7 *)"),
        ("0 3 * * 1,FRI", "cron(0 3 ? * 2,6 *)"),
        ("0 3 * * 5-7", "cron(0 3 ? * 1,6,7 *)"),
        ("15 4 * * 7", "cron(15 4 ? * 1 *)"),
        ("0 2 1 * *", "cron(0 2 1 * ? *)"),
        ("cron(0 2 * * ? *)", "cron(0 2 * * ? *)"),
        ("  cron(5 3 ? * MON-FRI *) ", "cron(5 3 ? * MON-FRI *)"),
    ],
)
def test_aws_cron_translates_unix_fields(unix: str, aws: str) -> None:
    assert tasks.aws_cron(unix) == aws


@pytest.mark.parametrize("bad", ["61 2 * * *", "bad", "0 2 1 * 1", "0 25 * * *", "cron(0 2 * * ?)"])
def test_aws_cron_rejects_invalid_expressions(bad: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        tasks.aws_cron(bad)
    assert _fields(caught.value) == ["schedule.cronExpression"]
    assert "schedule.cronExpression" in str(caught.value)


# --- tasks.check_task_sql -----------------------------------------------------------------------


def test_check_task_sql_accepts_one_statement() -> None:
    assert (
        tasks.check_task_sql("UPDATE app.jobs SET state = 'stale' WHERE updated < now() - interval '1 day'")
        is None
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1; SELECT 2", "one statement"),
        ("COMMIT", "transaction control"),
        ("BEGIN", "transaction control"),
        ("VACUUM t", "not in a transaction"),
        ("REINDEX TABLE t", "not in a transaction"),
        ("SELEC 1", "syntax error"),
    ],
)
def test_check_task_sql_rejects(text: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        tasks.check_task_sql(text)
    assert caught.value.details == [{"field": "taskSQL", "message": message}]


# --- windows.Span -------------------------------------------------------------------------------


def test_span_of_a_normal_window() -> None:
    span = windows.Span.of("02:00", "04:00")
    assert span.length == timedelta(hours=2)
    assert span.contains(MONDAY.replace(hour=2))
    assert span.contains(MONDAY.replace(hour=3, minute=59))
    assert not span.contains(MONDAY.replace(hour=4))
    assert not span.contains(MONDAY.replace(hour=1, minute=59))
    inside = MONDAY.replace(hour=3)
    assert span.next_open(inside) == inside
    assert span.next_open(MONDAY.replace(hour=1)) == MONDAY.replace(hour=2)
    assert span.next_open(MONDAY.replace(hour=5)) == MONDAY.replace(hour=2) + timedelta(days=1)
    assert span.end_after(inside) == MONDAY.replace(hour=4)
    assert span.end_after(MONDAY.replace(hour=5)) is None


def test_span_past_midnight() -> None:
    span = windows.Span.of("23:00", "01:00")
    assert span.length == timedelta(hours=2)
    assert span.contains(MONDAY.replace(hour=23, minute=30))
    assert span.contains(MONDAY.replace(hour=0, minute=30))  # opened on Sunday at 23:00
    assert not span.contains(MONDAY.replace(hour=1))
    assert not span.contains(MONDAY.replace(hour=22, minute=59))
    assert span.next_open(MONDAY.replace(hour=12)) == MONDAY.replace(hour=23)
    assert span.end_after(MONDAY.replace(hour=0, minute=30)) == MONDAY.replace(hour=1)
    assert span.end_after(MONDAY.replace(hour=23, minute=30)) == MONDAY.replace(hour=1) + timedelta(days=1)


def test_span_days_of_week() -> None:
    sunday_only = windows.Span.of("02:00", "04:00", days=[0])
    sunday = MONDAY - timedelta(days=1)
    assert sunday.isoweekday() == 7
    assert sunday_only.contains(sunday.replace(hour=3))
    assert not sunday_only.contains(MONDAY.replace(hour=3))
    assert sunday_only.next_open(MONDAY.replace(hour=3)) == sunday.replace(hour=2) + timedelta(days=7)
    # past midnight: a Sunday window still holds Monday 00:30, a Monday-only one does not.
    late_sunday = windows.Span.of("23:00", "01:00", days=[0])
    assert late_sunday.contains(MONDAY.replace(hour=0, minute=30))
    assert not windows.Span.of("23:00", "01:00", days=[1]).contains(MONDAY.replace(hour=0, minute=30))
    assert windows.Span.of("02:00", "04:00", days=[]).next_open(MONDAY) is None


# --- models -------------------------------------------------------------------------------------


def test_time_window_end_equal_to_start_is_rejected() -> None:
    with pytest.raises(ValidationError):
        TimeWindow.model_validate({"start": "02:00", "end": "02:00"})
    assert TimeWindow.model_validate({"start": "23:00", "end": "01:00"}).end == "01:00"


def test_task_schedule_with_an_empty_window_is_rejected() -> None:
    with pytest.raises(ValidationError):
        TaskSchedule.model_validate(
            {
                "frequency": "DAILY",
                "cronExpression": "0 2 * * *",
                "maintenanceWindow": {"start": "03:00", "end": "03:00"},
            }
        )
    ok = TaskSchedule.model_validate(
        {
            "frequency": "DAILY",
            "cronExpression": "0 2 * * *",
            "maintenanceWindow": {"start": "03:00", "end": "05:00"},
        }
    )
    assert ok.maintenance_window is not None and ok.maintenance_window.end == "05:00"


@pytest.mark.parametrize("days", [[7], [-1], [0, 8]])
def test_window_create_days_outside_the_week_are_rejected(days: list[int]) -> None:
    with pytest.raises(ValidationError):
        WindowCreate.model_validate(
            {"name": "w", "startTime": "03:00", "endTime": "05:00", "daysOfWeek": days}
        )


def test_window_create_days_are_sorted_and_unique() -> None:
    body = WindowCreate.model_validate(
        {"name": "w", "startTime": "03:00", "endTime": "05:00", "daysOfWeek": [6, 0, 6]}
    )
    assert body.days_of_week == [0, 6]


# --- schedule.conflicts / runs ------------------------------------------------------------------


def _task(task_id: str, name: str, task_type: str = "VACUUM", hour: int = 2, exclusive: bool = True,
          target: str | None = TARGET) -> dict[str, Any]:  # fmt: skip
    """A task record as tasks.create stores it."""
    return {
        "id": task_id, "tenant_id": "acme", "task_name": name, "task_type": task_type, "target_id": target,
        "schedule": {"frequency": "DAILY", "cron_expression": f"0 {hour} * * *", "maintenance_window": None},
        "schedule_expression": f"cron(0 {hour} * * ? *)",
        "configuration": {"requires_exclusive_lock": exclusive}, "is_enabled": True, "priority": 5,
    }  # fmt: skip


def _window(window_id: str = "mwn-000000000001", start: str = "03:00", end: str = "05:00") -> dict[str, Any]:
    return {
        "id": window_id, "tenant_id": "acme", "name": "night", "start_time": start, "end_time": end,
        "days_of_week": [0, 1, 2, 3, 4, 5, 6], "is_active": True, "allowed_task_types": [],
    }  # fmt: skip


def _of_type(found: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in found if c["conflict_type"] == kind]


def test_runs_use_the_cron_and_the_default_estimate(fake_ports: FakePorts) -> None:
    found = [_task("mtk-00000000000a", "a"), {**_task("mtk-00000000000b", "b"), "is_enabled": False}]
    upcoming = schedule.runs(fake_ports, found, MONDAY, timedelta(hours=24))  # type: ignore[arg-type]
    assert [(r.task["id"], r.at) for r in upcoming] == [("mtk-00000000000a", MONDAY.replace(hour=2))]
    assert upcoming[0].seconds == schedule.DEFAULT_ESTIMATE and upcoming[0].measured is False
    three_days = schedule.runs(fake_ports, found[:1], MONDAY, timedelta(hours=72))  # type: ignore[arg-type]
    assert [r.at for r in three_days] == [MONDAY.replace(hour=2) + timedelta(days=d) for d in range(3)]


def test_runs_estimate_from_completed_executions(fake_ports: FakePorts) -> None:
    task = _task("mtk-00000000000a", "a")
    for i, (duration, status, dry) in enumerate(
        [
            (100.0, "COMPLETED", False),
            (200.0, "COMPLETED", False),
            (900.0, "COMPLETED", True),
            (5.0, "FAILED", False),
        ]
    ):
        fake_ports.store.create(
            "maintenance_execution",
            {"id": f"mex-00000000000{i}", "tenant_id": "acme", "parent_id": task["id"], "status": status,
             "dry_run": dry, "duration": duration, "created_at": f"2026-01-0{i + 1}T00:00:00Z"},
        )  # fmt: skip
    (run,) = schedule.runs(fake_ports, [task], MONDAY, timedelta(hours=24))  # type: ignore[arg-type]
    assert run.seconds == 150.0 and run.measured is True


def test_resource_conflict_of_two_exclusive_tasks_on_one_target(fake_ports: FakePorts) -> None:
    a, b = _task("mtk-00000000000a", "vacuum a"), _task("mtk-00000000000b", "vacuum b")
    upcoming = schedule.runs(fake_ports, [a, b], MONDAY, timedelta(hours=24))  # type: ignore[arg-type]
    found = schedule.conflicts(upcoming, [], 5)
    resource = _of_type(found, "RESOURCE")
    assert len(resource) == 1
    assert resource[0]["affected_tasks"] == ["mtk-00000000000a", "mtk-00000000000b"]
    assert "vacuum a" in resource[0]["description"] and "vacuum b" in resource[0]["description"]
    assert _of_type(found, "TIME") == []  # no windows: nothing to be outside of


def test_no_resource_conflict_on_other_targets_or_without_exclusive_locks(fake_ports: FakePorts) -> None:
    other = _task("mtk-00000000000b", "b", target="pgi-000000000002")
    upcoming = schedule.runs(fake_ports, [_task("mtk-00000000000a", "a"), other], MONDAY, timedelta(hours=24))  # type: ignore[arg-type]
    assert schedule.conflicts(upcoming, [], 5) == []
    shared = [
        _task("mtk-00000000000a", "a", exclusive=False),
        _task("mtk-00000000000b", "b", exclusive=False),
    ]
    upcoming = schedule.runs(fake_ports, shared, MONDAY, timedelta(hours=24))  # type: ignore[arg-type]
    assert schedule.conflicts(upcoming, [], 5) == []
    # ...but more at once than maxConcurrentTasks is a RESOURCE conflict too.
    (too_many,) = schedule.conflicts(upcoming, [], 1)
    assert too_many["conflict_type"] == "RESOURCE"
    assert too_many["affected_tasks"] == ["mtk-00000000000a", "mtk-00000000000b"]


def test_time_conflict_outside_the_window(fake_ports: FakePorts) -> None:
    task = _task("mtk-00000000000a", "vacuum a")
    upcoming = schedule.runs(fake_ports, [task], MONDAY, timedelta(hours=24))  # type: ignore[arg-type]
    (time,) = schedule.conflicts(upcoming, [_window()], 5)
    assert time["conflict_type"] == "TIME"
    assert time["affected_tasks"] == ["mtk-00000000000a"]
    inside = _task("mtk-00000000000b", "vacuum b", hour=4)
    upcoming = schedule.runs(fake_ports, [inside], MONDAY, timedelta(hours=24))  # type: ignore[arg-type]
    assert schedule.conflicts(upcoming, [_window()], 5) == []
    # a window that does not allow the type does not count
    analyze_only = {**_window(), "allowed_task_types": ["ANALYZE"]}
    assert _of_type(schedule.conflicts(upcoming, [analyze_only], 5), "TIME")[0]["affected_tasks"] == [
        "mtk-00000000000b"
    ]


def test_dependency_conflict_analyze_before_vacuum(fake_ports: FakePorts) -> None:
    analyze = _task("mtk-00000000000a", "analyze", task_type="ANALYZE", hour=1, exclusive=False)
    vacuum = _task("mtk-00000000000b", "vacuum", hour=2, exclusive=False)
    upcoming = schedule.runs(fake_ports, [analyze, vacuum], MONDAY, timedelta(hours=24))  # type: ignore[arg-type]
    (dependency,) = schedule.conflicts(upcoming, [], 5)
    assert dependency["conflict_type"] == "DEPENDENCY"
    assert dependency["affected_tasks"] == ["mtk-00000000000a", "mtk-00000000000b"]
    assert schedule.dependencies(analyze, [analyze, vacuum]) == ["mtk-00000000000b"]
    # the VACUUM first: no dependency conflict
    later = _task("mtk-00000000000a", "analyze", task_type="ANALYZE", hour=3, exclusive=False)
    upcoming = schedule.runs(fake_ports, [later, vacuum], MONDAY, timedelta(hours=24))  # type: ignore[arg-type]
    assert _of_type(schedule.conflicts(upcoming, [], 5), "DEPENDENCY") == []


# --- schedule.optimize --------------------------------------------------------------------------


def _store_conflicting(fake_ports: FakePorts) -> tuple[dict[str, Any], dict[str, Any]]:
    a = fake_ports.store.create(
        tasks.KIND, {**_task("mtk-00000000000a", "vacuum a"), "created_at": "2026-01-01T00:00:00Z"}
    )
    b = fake_ports.store.create(
        tasks.KIND, {**_task("mtk-00000000000b", "vacuum b"), "created_at": "2026-01-01T00:00:01Z"}
    )
    fake_ports.store.create(windows.KIND, {**_window(), "created_at": "2026-01-01T00:00:00Z"})
    return a, b


def _freeze_clock(monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return now.astimezone(tz) if tz else now.replace(tzinfo=None)

    monkeypatch.setattr(schedule, "datetime", Clock)


# midnight, inside the window near its end, just before it closes
@pytest.mark.parametrize(
    "clock", [MONDAY, MONDAY.replace(hour=4, minute=47), MONDAY.replace(hour=4, minute=58)]
)
def test_optimize_proposes_clear_times_inside_the_window(
    fake_ports: FakePorts, monkeypatch: pytest.MonkeyPatch, clock: datetime
) -> None:
    _freeze_clock(monkeypatch, clock)
    a, b = _store_conflicting(fake_ports)
    result = schedule.optimize(fake_ports, ADMIN, ScheduleOptimizeRequest.model_validate({}))  # type: ignore[arg-type]
    before = result["conflicts_before"]
    assert [c["affected_tasks"] for c in _of_type(before, "RESOURCE")] == [[a["id"], b["id"]]]
    assert result["applied"] is False
    assert result["unresolved"] == []
    changes = {c["task_id"]: c for c in result["changes"]}
    assert set(changes) == {a["id"], b["id"]}  # both were in a TIME conflict
    span = windows.Span.of("03:00", "05:00")
    times = []
    for change in changes.values():
        at = datetime.fromisoformat(change["proposed_time"].replace("Z", "+00:00"))
        times.append(at)
        assert span.contains(at), change
        assert change["window_id"] == "mwn-000000000001"
        assert change["proposed_cron_expression"] == f"cron({at.minute} {at.hour} * * ? *)"
    assert abs(times[0] - times[1]) >= timedelta(seconds=schedule.DEFAULT_ESTIMATE)
    if clock == MONDAY:  # the first free 5-minute steps of the window, in store order
        assert (changes[a["id"]]["proposed_time"], changes[b["id"]]["proposed_time"]) == (
            "2026-01-05T03:00:00Z",
            "2026-01-05T03:05:00Z",
        )
    assert _of_type(result["conflicts_after"], "RESOURCE") == []
    assert _of_type(result["conflicts_after"], "TIME") == []
    # not applied: the stored tasks and their schedules are untouched
    assert fake_ports.store.get(tasks.KIND, a["id"])["schedule_expression"] == "cron(0 2 * * ? *)"  # type: ignore[index]
    assert fake_ports.scheduler.schedules == {}


def test_optimize_apply_changes_the_stored_tasks_and_their_schedules(fake_ports: FakePorts) -> None:
    a, b = _store_conflicting(fake_ports)
    body = ScheduleOptimizeRequest.model_validate({"apply": True})
    result = schedule.optimize(fake_ports, ADMIN, body)  # type: ignore[arg-type]
    assert result["applied"] is True
    for change in result["changes"]:
        stored = fake_ports.store.get(tasks.KIND, change["task_id"])
        assert stored is not None
        assert stored["schedule_expression"] == change["proposed_cron_expression"] != "cron(0 2 * * ? *)"
        assert stored["schedule"]["cron_expression"] == change["proposed_cron_expression"]
        put = fake_ports.scheduler.schedules[tasks.schedule_name(change["task_id"])]
        assert put.expression == change["proposed_cron_expression"]
    assert set(fake_ports.scheduler.schedules) == {tasks.schedule_name(a["id"]), tasks.schedule_name(b["id"])}


# --- cleanup.run --------------------------------------------------------------------------------


def _history(fake_ports: FakePorts, stream: str, ages_days: list[float]) -> None:
    now = datetime.now(UTC)
    fake_ports.history.append(
        stream,
        [
            HistoryRecord(stream, TARGET, "acme", now - timedelta(days=d), {"n": i}, ttl_seconds=None)
            for i, d in enumerate(ages_days)
        ],
    )


def _by_category(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["category"]: r for r in result["results"]}


def test_cleanup_monitoring_dry_run_counts_what_the_run_deletes(fake_ports: FakePorts) -> None:
    _history(fake_ports, "metrics", [40, 35, 31, 5, 1])
    _history(fake_ports, "audit", [400, 10])
    dry = cleanup.run(
        fake_ports, ADMIN, DataCleanupRequest.model_validate({"categories": ["MONITORING"], "dryRun": True})
    )  # type: ignore[arg-type]
    monitoring = _by_category(dry)["MONITORING"]
    assert dry["status"] == "DRY_RUN"
    assert (monitoring["records_identified"], monitoring["records_deleted"]) == (3, 0)
    assert monitoring["retention_period_days"] == 30
    assert "metrics 3" in monitoring["details"]
    assert len([k for k in fake_ports.history.records if k[0] == "metrics"]) == 5
    real = cleanup.run(fake_ports, ADMIN, DataCleanupRequest.model_validate({"categories": ["MONITORING"]}))  # type: ignore[arg-type]
    monitoring = _by_category(real)["MONITORING"]
    assert real["status"] == "COMPLETED"
    assert (monitoring["records_identified"], monitoring["records_deleted"]) == (3, 3)
    assert real["summary"]["total_deleted"] == 3
    assert len([k for k in fake_ports.history.records if k[0] == "metrics"]) == 2
    kept = [r for k, r in fake_ports.history.records.items() if k[0] == "audit"]
    assert (
        len([r for r in kept if r.data.get("action") != "maintenance.cleanup"]) == 2
    )  # other streams untouched


def test_cleanup_audit_keeps_the_legal_retention(fake_ports: FakePorts) -> None:
    _history(fake_ports, "audit", [400, 366, 364, 200, 1])
    body = DataCleanupRequest.model_validate(
        {"categories": ["AUDIT"], "customRetentionPolicies": {"AUDIT": 1}}
    )
    result = cleanup.run(fake_ports, ADMIN, body)  # type: ignore[arg-type]
    audit = _by_category(result)["AUDIT"]
    assert audit["retention_period_days"] == 365
    assert (audit["records_identified"], audit["records_deleted"]) == (2, 2)
    assert "below the legal retention of 365 days" in audit["details"]
    now = datetime.now(UTC)
    left = [r.at for k, r in fake_ports.history.records.items()
            if k[0] == "audit" and r.data.get("action") != "maintenance.cleanup"]  # fmt: skip
    assert len(left) == 3
    assert all(now - at < timedelta(days=365) for at in left)


def test_cleanup_monitoring_custom_retention_and_tenant_scope(fake_ports: FakePorts) -> None:
    _history(fake_ports, "metrics", [3, 1])
    fake_ports.history.append(
        "metrics",
        [
            HistoryRecord(
                "metrics", TARGET, "other", datetime.now(UTC) - timedelta(days=3), {}, ttl_seconds=None
            )
        ],
    )
    body = DataCleanupRequest.model_validate(
        {"tenantId": "acme", "categories": ["MONITORING"], "customRetentionPolicies": {"MONITORING": 2}}
    )
    monitoring = _by_category(cleanup.run(fake_ports, ADMIN, body))["MONITORING"]  # type: ignore[arg-type]
    assert (monitoring["records_identified"], monitoring["records_deleted"]) == (1, 1)
    assert monitoring["retention_period_days"] == 2
    left = [
        r for r in fake_ports.history.records.values() if r.stream != "audit"
    ]  # the cleanup's own event aside
    assert sorted(r.tenant_id or "" for r in left) == ["acme", "other"]


# SESSION (idle sessions through ports.sql on running servers) and BACKUP (the backup engine's
# expiry) need servers and backups the fakes would have to set up in full: not covered here.


# --- plan.choose --------------------------------------------------------------------------------


class FakeSession(SqlSession):
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows
        self.queries: list[Any] = []

    def execute(self, query: Any, params: Any = None) -> None:
        self.queries.append(query)

    def fetch_all(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        self.queries.append(query)
        return list(self.rows)

    def fetch_one(self, query: Any, params: Any = None) -> tuple[Any, ...] | None:
        self.queries.append(query)
        return self.rows[0] if self.rows else None


FREEZE_MAX_AGE = 200_000_000


def _row(name: str, dead: int, live: int, xid_age: int = 1_000, schema: str = "public", modified: int = 0,
         last_analyze: Any = "2026-01-01") -> tuple[Any, ...]:  # fmt: skip
    # nspname, relname, oid, n_dead_tup, n_live_tup, reltuples, vac_threshold, vac_scale,
    # ana_threshold, ana_scale, n_mod_since_analyze, last_vacuum, last_analyze, xid_age,
    # freeze_max_age, table_size, total_size
    return (schema, name, 16384, dead, live, float(dead + live), 50.0, 0.2, 50.0, 0.1, modified,
            None, last_analyze, xid_age, FREEZE_MAX_AGE, 8192 * 10, 8192 * 12)  # fmt: skip


def test_plan_vacuums_past_the_trigger_and_freezes_first() -> None:
    session = FakeSession(
        [
            _row("t", dead=300, live=700),  # 30% dead, trigger 50 + 0.2 x 1000 = 250
            _row("quiet", dead=100, live=900),  # under the trigger
            _row("old", dead=0, live=1000, xid_age=150_000_000),  # past half of freeze_max_age
        ]
    )
    items = plan.choose(session, TARGET, "app", ["vacuum_bloated_tables"])
    assert [(i.action, i.name) for i in items] == [("VACUUM_FREEZE", "old"), ("VACUUM", "t")]
    assert session.queries == [plan.q.TABLES]
    freeze, vacuum = items
    assert "150,000,000" in freeze.reason and "200,000,000" in freeze.reason
    assert vacuum.reason.startswith("300 dead tuples (30% of rows) pass autovacuum's trigger of 250")
    assert vacuum.dead_tuples == 300 and vacuum.size_bytes == 8192 * 12 and vacuum.database == "app"
    assert freeze.to_record()["sql"] == 'VACUUM (FREEZE) "public"."old"'
    record = vacuum.to_record()
    assert record["sql"] == 'VACUUM "public"."t"'
    assert (record["type"], record["exclusive"], record["target_id"]) == ("VACUUM", False, TARGET)


def test_plan_vacuum_full_only_when_allowed() -> None:
    session = FakeSession([_row("t", dead=300, live=700), _row("quiet", dead=100, live=900)])
    (item,) = plan.choose(session, TARGET, "app", ["vacuum_bloated_tables"], allow_full=True)
    assert item.action == "VACUUM_FULL" and item.exclusive is True
    assert "VACUUM FULL allowed" in item.reason
    assert item.to_record()["sql"] == 'VACUUM (FULL) "public"."t"'
    # below FULL_DEAD_RATIO a table past the trigger gets a plain VACUUM even when FULL is allowed
    few = FakeSession([_row("t", dead=150, live=850, schema="app")])
    few_rows = few.rows[0]
    few.rows = [(*few_rows[:6], 10.0, 0.0, *few_rows[8:])]  # trigger 10: 150 dead pass it, 15% of rows
    (plain,) = plan.choose(few, TARGET, "app", ["vacuum_bloated_tables"], allow_full=True)
    assert plain.action == "VACUUM"


def test_plan_quotes_identifiers() -> None:
    session = FakeSession([_row('we"ird Name', dead=300, live=700, schema="My Schema")])
    (item,) = plan.choose(session, TARGET, "app", ["vacuum_bloated_tables"])
    assert item.to_record()["sql"] == 'VACUUM "My Schema"."we""ird Name"'


def test_plan_analyze_and_dedup() -> None:
    session = FakeSession(
        [
            _row("changed", dead=0, live=1000, modified=500),  # trigger 50 + 0.1 x 1000 = 150
            _row("steady", dead=0, live=1000, modified=10),
            _row("fresh", dead=0, live=10, last_analyze=None),
        ]
    )
    items = plan.choose(session, TARGET, "app", ["analyze_stale_tables", "analyze_stale_tables"])
    assert [(i.action, i.name) for i in items] == [("ANALYZE", "changed"), ("ANALYZE", "fresh")]
    assert items[0].reason == "500 rows changed since the last analyze pass the trigger of 150"
    assert items[1].reason == "never analyzed, and it holds rows"
    assert items[0].to_record()["sql"] == 'ANALYZE "public"."changed"'
    assert plan.choose(FakeSession([]), TARGET, "app", ["vacuum_bloated_tables"]) == []
