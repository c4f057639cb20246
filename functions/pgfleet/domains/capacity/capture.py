"""Utilization capture: one history record per server and resource (stream `capacity`), by
`POST /api/v1/capacity/utilization/capture` and the platform schedule
`pgfleet-capacity-capture` (hourly).

Per server (an instance, or a cluster's primary):
- STORAGE: the size of every database (pg_database_size) against the storage the server was
  given (`storage` GB);
- CONNECTIONS: client backends against `max_connections`;
- MEMORY: the server's memory (its cgroup's, or the processes' Pss) against its `memory` MB,
  where the server runs on this host;
- CPU: the server's CPU time since the previous capture against its `cpu` cores over the same
  time (the first capture of a server has no CPU figure);
- per tenant database: TENANT_STORAGE, its size against its quota's `max_storage_mb`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, NotFound
from pgfleet.domains import monitoring, servers, tenants
from pgfleet.ports.history import HistoryRecord
from pgfleet.ports.scheduler import Schedule

log = logging.getLogger("pgfleet.capacity")

STREAM = "capacity"
TTL_SECONDS = 400 * 86400  # a year of history, and a season more, for the forecasts
CAPTURE_TASK = "capacity.capture"
CAPTURE_SCHEDULE = Schedule(
    name="pgfleet-capacity-capture", expression="rate(1 hour)", payload={"task": CAPTURE_TASK}
)
RESOURCE_TYPES = ("STORAGE", "CONNECTIONS", "CPU", "MEMORY", "TENANT_STORAGE")
WARNING_PERCENT, CRITICAL_PERCENT = 80.0, 90.0
GB = 1024**3
MB = 1024**2
SQL = """
SELECT (SELECT COALESCE(SUM(pg_catalog.pg_database_size(d.oid)), 0) FROM pg_catalog.pg_database d
         WHERE NOT d.datistemplate)::pg_catalog.int8,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a WHERE a.backend_type = 'client backend')::pg_catalog.int8,
       pg_catalog.current_setting('max_connections')::pg_catalog.int8,
       pg_catalog.pg_backend_pid(), pg_catalog.current_setting('data_directory')
"""
DATABASE_SIZE = "SELECT pg_catalog.pg_database_size(d.oid) FROM pg_catalog.pg_database d WHERE d.datname = %s"


def status_of(percent: float | None) -> str:
    if percent is None:
        return "NORMAL"
    return (
        "CRITICAL" if percent >= CRITICAL_PERCENT else ("WARNING" if percent >= WARNING_PERCENT else "NORMAL")
    )


def _item(target: servers.Target, resource_type: str, usage: float, capacity: float | None, unit: str,
          resource_id: str | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    percent = round(100.0 * usage / capacity, 3) if capacity else None
    return {
        "resource_type": resource_type, "resource_id": resource_id or target.target_id, "target_id": target.target_id,
        "tenant_id": target.tenant_id, "current_usage": usage, "capacity": capacity, "unit": unit,
        "utilization_percentage": percent, "status": status_of(percent), **extra,
    }  # fmt: skip


def _previous_cpu(ports: Ports, target_id: str, now: datetime) -> dict[str, Any] | None:
    page = ports.history.query(
        STREAM, start=now - timedelta(days=2), end=now, target_id=target_id, filters={"resource_type": "CPU_COUNTER"},
        page=1, page_size=1,
    )  # fmt: skip
    return page.items[0].data if page.items else None


def measure(ports: Ports, target: servers.Target, now: datetime) -> list[dict[str, Any]]:
    record = target.server.record
    with ports.sql.session(target.target_id, statement_timeout_ms=10_000) as session:
        row = session.fetch_one(SQL)
        assert row is not None
        storage, connections, max_connections, pid, data_directory = row
        own = []
        for tenant in tenants.of_server(ports, target.target_id):
            quota = (tenant.get("quota") or {}).get("max_storage_mb")
            found = session.fetch_one(DATABASE_SIZE, (tenant.get("database_name"),))
            if found is not None:
                own.append((tenant, int(found[0]), quota))
    items = [
        _item(target, "STORAGE", int(storage), float(record.get("storage") or 0) * GB or None, "bytes"),
        _item(target, "CONNECTIONS", int(connections), float(max_connections), "connections"),
    ]
    usage = monitoring.backend_usage(int(pid), str(data_directory))
    if usage is not None and usage.server.memory_bytes is not None:
        items.append(_item(target, "MEMORY", usage.server.memory_bytes, float(record.get("memory") or 0) * MB or None,
                           "bytes", source=usage.server.source))  # fmt: skip
    if usage is not None and usage.server.cpu_seconds is not None:
        previous = _previous_cpu(ports, target.target_id, now)
        counter = {
            "resource_type": "CPU_COUNTER",
            "cpu_seconds": usage.server.cpu_seconds,
            "at": now.isoformat(),
        }
        items.append(
            {**counter, "target_id": target.target_id, "tenant_id": target.tenant_id, "internal": True}
        )
        if previous is not None:
            seconds = (now - datetime.fromisoformat(previous["at"])).total_seconds()
            used = usage.server.cpu_seconds - float(previous["cpu_seconds"])
            if seconds > 0 and used >= 0:
                cores = float(record.get("cpu") or 1)
                items.append(
                    _item(target, "CPU", round(used / seconds, 4), cores, "cores", source=usage.server.source)
                )
    for tenant, size, quota in own:
        items.append(_item(target, "TENANT_STORAGE", size, float(quota) * MB if quota else None, "bytes",
                           resource_id=f"{target.target_id}/{tenant.get('database_name')}",
                           database=tenant.get("database_name"), tenant_name=tenant.get("tenant_id")))  # fmt: skip
    return items


def capture(
    ports: Ports, found: list[servers.Target], now: datetime | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Measure every target and store the records; (items, problems)."""
    now = now or datetime.now(UTC)
    items: list[dict[str, Any]] = []
    problems = []
    for target in found:
        try:
            items += measure(ports, target, now)
        except (EngineError, InvalidState, NotFound) as exc:
            problems.append(f"{target.target_id}: {exc}")
    records = [
        HistoryRecord(stream=STREAM, target_id=i["target_id"], tenant_id=i["tenant_id"], at=now,
                      data={k: v for k, v in i.items() if k != "internal"}, ttl_seconds=TTL_SECONDS)
        for i in items
    ]  # fmt: skip
    if records:
        ports.history.append(STREAM, records)
    return [i for i in items if not i.get("internal")], problems
