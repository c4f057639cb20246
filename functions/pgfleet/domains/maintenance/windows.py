"""Maintenance windows: records of kind `maintenance_window` (`/api/v1/maintenance/windows`),
daily UTC spans on some days of the week, and the window arithmetic every part of the domain
uses (inside? when does the next one open?). A span whose end is before its start runs past
midnight; its day is the day it opens."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any

from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import NotFound, ValidationFailed
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains.maintenance.models import WindowCreate, WindowUpdate

KIND = "maintenance_window"
ID_PREFIX = "mwn"
ALL_DAYS = (0, 1, 2, 3, 4, 5, 6)


@dataclass(frozen=True)
class Span:
    """A daily window: [start, end) in UTC on `days` (0 = Sunday), by the day it opens."""

    start: dt_time
    end: dt_time
    days: tuple[int, ...] = ALL_DAYS
    window_id: str | None = None

    @classmethod
    def of(cls, start: str, end: str, days: Iterable[int] = ALL_DAYS, window_id: str | None = None) -> Span:
        return cls(dt_time.fromisoformat(start), dt_time.fromisoformat(end), tuple(days), window_id)

    @property
    def length(self) -> timedelta:
        begin = self.start.hour * 60 + self.start.minute
        finish = self.end.hour * 60 + self.end.minute
        return timedelta(minutes=(finish - begin) % (24 * 60))

    def _openings(self, around: datetime) -> Iterable[datetime]:
        """The moments the window opens, from the day before `around` on, for 8 days."""
        day = (around - timedelta(days=1)).date()
        for offset in range(9):
            d = day + timedelta(days=offset)
            if (d.isoweekday() % 7) in self.days:
                yield datetime.combine(d, self.start, UTC)

    def contains(self, when: datetime) -> bool:
        return any(o <= when < o + self.length for o in self._openings(when))

    def next_open(self, when: datetime) -> datetime | None:
        """`when` if inside, else the next opening (None: no day selected)."""
        if self.contains(when):
            return when
        return next((o for o in self._openings(when) if o > when), None)

    def end_after(self, when: datetime) -> datetime | None:
        """When the opening that holds `when` closes."""
        for o in self._openings(when):
            if o <= when < o + self.length:
                return o + self.length
        return None


def span_of(record: dict[str, Any]) -> Span:
    return Span.of(
        record["start_time"], record["end_time"], record.get("days_of_week") or ALL_DAYS, record["id"]
    )


def _check(start: str, end: str) -> None:
    if dt_time.fromisoformat(start).replace(second=0) == dt_time.fromisoformat(end).replace(second=0):
        raise ValidationFailed(
            "the window's endTime equals its startTime: it would be empty",
            details=[{"field": "endTime", "message": "equals startTime"}],
        )


def create(ports: Ports, caller: Principal, body: WindowCreate) -> dict[str, Any]:
    _check(body.start_time, body.end_time)
    tenant = tenant_scope(caller, body.tenant_id) or caller.tenant_id
    now = utcnow_iso()
    record = {
        **body.to_record(),
        "id": new_id(ID_PREFIX),
        "tenant_id": tenant,
        "created_at": now,
        "updated_at": now,
    }
    return ports.store.create(KIND, record)


def get(ports: Ports, caller: Principal, window_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, window_id)
    if record is None or not caller.sees_tenant(record["tenant_id"]):
        raise NotFound(f"maintenance window {window_id} not found")
    return record


def update(ports: Ports, caller: Principal, window_id: str, body: WindowUpdate) -> dict[str, Any]:
    record = get(ports, caller, window_id)
    changes = body.model_dump(mode="json", by_alias=False, exclude_unset=True)
    if any(v is None for v in changes.values()):
        raise ValidationFailed(
            "a window's fields cannot be null",
            details={"field": next(k for k, v in changes.items() if v is None)},
        )
    if "days_of_week" in changes:
        if any(d < 0 or d > 6 for d in changes["days_of_week"]):
            raise ValidationFailed("days of the week are 0 (Sunday) to 6", details={"field": "daysOfWeek"})
        changes["days_of_week"] = sorted(set(changes["days_of_week"]))
    _check(changes.get("start_time", record["start_time"]), changes.get("end_time", record["end_time"]))
    changes["updated_at"] = utcnow_iso()
    return ports.store.update(KIND, window_id, changes, record["revision"])


def delete(ports: Ports, caller: Principal, window_id: str) -> None:
    get(ports, caller, window_id)
    ports.store.delete(KIND, window_id)


def of_tenant(ports: Ports, tenant_id: str | None) -> list[dict[str, Any]]:
    """The windows of a tenant (every tenant's when None), oldest first."""
    return ports.store.every(KIND, tenant_id=tenant_id)


def visible(ports: Ports, caller: Principal, tenant_id: str | None) -> list[dict[str, Any]]:
    if not caller.is_platform_admin and tenant_id not in (None, caller.tenant_id):
        return []
    return of_tenant(ports, tenant_scope(caller, tenant_id))


def task_span(task: dict[str, Any]) -> Span | None:
    """The task's own window (schedule.maintenanceWindow), if it has one."""
    window = (task.get("schedule") or {}).get("maintenance_window")
    return Span.of(window["start"], window["end"]) if window else None


def allowed(window: dict[str, Any], task_type: str) -> bool:
    types = window.get("allowed_task_types") or []
    return bool(window.get("is_active")) and (not types or task_type in types)
