"""`GET` / `PUT /api/v1/system/configuration`, section DATABASE: a server's PostgreSQL
settings, read from `pg_settings` under the seed's names (and any GUC by its own name), and
changed after validation against `pg_settings` itself (type, min/max in the setting's own
unit, enumvals; shared_buffers within half the server's memory).

A change is the server's desired state: it is stored in the instance's or cluster's `settings`
(the engine renders them into the configuration it manages, so a later provision, resize or
failover keeps them) and applied at once:
- a setting PostgreSQL reloads (context user, superuser, sighup, ...) with a reload: an
  instance's managed configuration rewritten and `pg_reload_conf()` through the SQL seam; a
  cluster's through Patroni (patroni.yml and the DCS `/config`, which Patroni reloads itself);
- a `postmaster` setting needs a restart: with `applyImmediately` a `system.configure` operation
  restarts the server (a cluster's replicas first when raising, its primary first when
  lowering a setting a standby may not have below its primary); with `scheduleRestart` an
  EventBridge Scheduler `at()` starts that operation then; otherwise it stays in
  `pendingRestart` until the next restart.
The configuration the engine manages is the one place settings live (not `ALTER SYSTEM`'s
postgresql.auto.conf, which would silently win over every later provision).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from pgfleet.core import audit, operations, resources
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState, ValidationFailed
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.domains import clusters, instances, servers
from pgfleet.ports.metadata import Update
from pgfleet.ports.scheduler import Schedule

CONFIGURE = "system.configure"
RESTART_TASK = "system.restart"
SCHEDULE_PREFIX = "pgfleet-system-restart-"
SEED_NAMES = {
    "maxConnections": "max_connections",
    "sharedBuffers": "shared_buffers",
    "effectiveCacheSize": "effective_cache_size",
    "workMem": "work_mem",
    "maintenanceWorkMem": "maintenance_work_mem",
    "walLevel": "wal_level",
    "maxWalSize": "max_wal_size",
    "checkpointCompletionTarget": "checkpoint_completion_target",
}
NUMERIC = ("maxConnections", "checkpointCompletionTarget")
# The engine and the archive domain manage these: a user may not set them.
MANAGED = frozenset({
    "port", "listen_addresses", "unix_socket_directories", "unix_socket_permissions", "password_encryption",
    "logging_collector", "log_destination", "log_directory", "log_filename", "log_timezone", "data_directory",
    "config_file", "hba_file", "ident_file", "external_pid_file", "primary_conninfo", "primary_slot_name",
    "archive_mode", "archive_command", "restore_command", "archive_library", "hot_standby", "cluster_name",
})  # fmt: skip
# Never settable through the API, whatever the role: what runs programs or loads code as the
# server's OS user (the `*_command`s, libraries, the JIT provider), names files on the host,
# turns off durability or the platform's replication and archiving, or locks the platform out.
FORBIDDEN = frozenset({
    "fsync", "full_page_writes", "wal_level", "wal_sync_method", "data_sync_retry", "superuser_reserved_connections",
    "reserved_connections", "allow_system_table_mods", "ignore_system_indexes", "zero_damaged_pages",
    "ignore_checksum_failure", "ignore_invalid_pages", "jit_provider", "dynamic_library_path",
    "default_transaction_read_only", "max_wal_senders", "max_replication_slots", "wal_keep_size", "hot_standby_feedback",
    "event_source", "syslog_ident", "log_statement", "log_min_error_statement", "log_parameter_max_length_on_error",
    "debug_print_parse", "debug_print_rewritten", "debug_print_plan", "session_replication_role",
})  # fmt: skip
FORBIDDEN_PATTERNS = (re.compile(r"_command$"), re.compile(r"librar"), re.compile(r"_file$"), re.compile(r"^ssl"),
                      re.compile(r"^krb_"), re.compile(r"_directory$"), re.compile(r"^debug_"))  # fmt: skip


def forbidden(name: str) -> bool:
    return name in MANAGED or name in FORBIDDEN or any(p.search(name) for p in FORBIDDEN_PATTERNS)


HOT_STANDBY_MINIMUMS = frozenset(
    {
        "max_connections",
        "max_worker_processes",
        "max_wal_senders",
        "max_prepared_transactions",
        "max_locks_per_transaction",
    }
)
SHARED_BUFFERS_SHARE = 0.5
SETTINGS_SQL = """
SELECT s.name, s.setting, s.unit, s.vartype, s.min_val, s.max_val, s.enumvals, s.context, s.pending_restart,
       s.source, pg_catalog.current_setting(s.name), s.short_desc
  FROM pg_catalog.pg_settings s WHERE s.name = ANY(%s)
"""
RELOAD_SQL = "SELECT pg_catalog.pg_reload_conf()"
PENDING_SQL = "SELECT s.name FROM pg_catalog.pg_settings s WHERE s.pending_restart ORDER BY s.name"
MEMORY_UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
TIME_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_NUMBER_UNIT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
BOOLEANS = {
    "on": "on",
    "off": "off",
    "true": "on",
    "false": "off",
    "yes": "on",
    "no": "off",
    "1": "on",
    "0": "off",
}


def _unit_factor(unit: str | None) -> tuple[str, float] | None:
    """(kind, size of one unit in bytes or ms) of a pg_settings unit ("8kB", "ms", "min")."""
    if not unit:
        return None
    m = re.match(r"^(\d*)(B|kB|MB|GB|TB|us|ms|s|min|h|d)$", unit)
    if not m:
        return None
    count = int(m.group(1) or 1)
    if m.group(2) in MEMORY_UNITS:
        return "memory", count * MEMORY_UNITS[m.group(2)]
    return "time", count * TIME_UNITS[m.group(2)]


def _invalid(name: str, message: str, allowed: str) -> ValidationFailed:
    return ValidationFailed(
        f"configuration.{name}: {message} (allowed: {allowed})",
        details=[{"field": f"configuration.{name}", "message": message, "allowed": allowed}],
    )


def normalized(row: tuple[Any, ...], value: Any) -> tuple[str, float | None]:
    """The value as the configuration writes it, and its size in the setting's unit (numbers);
    ValidationFailed naming the setting and what it allows."""
    name, _, unit, vartype, min_val, max_val, enumvals = row[:7]
    text = str(value).strip()
    if isinstance(value, bool):
        text = "on" if value else "off"
    if any(ch in text for ch in "\n\r\0"):
        raise _invalid(name, "a value may not hold a line break", "one line")
    if vartype == "bool":
        if text.lower() not in BOOLEANS:
            raise _invalid(name, f"{text!r} is not a boolean", "on, off")
        return BOOLEANS[text.lower()], None
    if vartype == "enum":
        choices = list(enumvals or [])
        match = next((c for c in choices if c.lower() == text.lower()), None)
        if match is None:
            raise _invalid(name, f"{text!r} is not one of its values", ", ".join(choices))
        return match, None
    if vartype == "string":
        return text, None
    factor = _unit_factor(unit)
    bounds = f"{min_val} to {max_val}" + (f" ({unit})" if unit else "")
    m = _NUMBER_UNIT.match(text)
    if not m:
        raise _invalid(name, f"{text!r} is not a number" + (" with a unit" if unit else ""), bounds)
    number, given = float(m.group(1)), m.group(2)
    if given:
        if factor is None:
            raise _invalid(name, f"{name} takes no unit, got {given!r}", bounds)
        kind, size = factor
        table = MEMORY_UNITS if kind == "memory" else TIME_UNITS
        if given not in table:
            raise _invalid(name, f"{given!r} is not a {kind} unit", f"{bounds}; units {', '.join(table)}")
        number = number * table[given] / size
    if vartype == "integer":
        if abs(number - round(number)) > 1e-9:
            raise _invalid(name, f"{text!r} is not a whole number of {unit or 'units'}", bounds)
        number = float(round(number))
    if not float(min_val) <= number <= float(max_val):
        raise _invalid(name, f"{text!r} is outside its range", bounds)
    if given:
        return _in_units(number, unit, vartype), number
    return (str(int(number)) if vartype == "integer" else repr(number)), number


def _in_units(number: float, unit: str, vartype: str) -> str:
    """A number in the setting's unit written with its unit: 8kB units as kB (8 x n kB)."""
    m = re.match(r"^(\d*)(.*)$", unit)
    assert m is not None
    count, base = int(m.group(1) or 1), m.group(2)
    value = number * count
    return f"{int(value) if vartype == 'integer' or value.is_integer() else value}{base}"


def _wire(name: str, current: str, vartype: str) -> Any:
    if vartype == "integer" and name in ("max_connections",):
        return int(current)
    if vartype == "real":
        return float(current)
    return current


def read_rows(ports: Ports, target: servers.Target, names: list[str]) -> dict[str, tuple[Any, ...]]:
    with ports.sql.session(target.target_id, node=target.node, statement_timeout_ms=5_000) as session:
        return {r[0]: r for r in session.fetch_all(SETTINGS_SQL, (names,))}


def database_section(ports: Ports, target: servers.Target, extra: list[str]) -> dict[str, Any]:
    names = list(dict.fromkeys([*SEED_NAMES.values(), *extra]))
    rows = read_rows(ports, target, names)
    unknown = [n for n in extra if n not in rows]
    if unknown:
        raise ValidationFailed(
            f"no such setting: {', '.join(unknown)}",
            details=[{"field": "settings", "message": f"unknown {n}"} for n in unknown],
        )
    section: dict[str, Any] = {
        wire: _wire(guc, rows[guc][10], rows[guc][3]) for wire, guc in SEED_NAMES.items()
    }
    section["targetId"] = target.target_id
    section["settings"] = {
        name: {
            "value": rows[name][10], "setting": rows[name][1], "unit": rows[name][2], "vartype": rows[name][3],
            "min": rows[name][4], "max": rows[name][5], "enumvals": rows[name][6], "context": rows[name][7],
            "pendingRestart": bool(rows[name][8]), "source": rows[name][9], "description": rows[name][11],
        }
        for name in names
    }  # fmt: skip
    section["pendingRestart"] = sorted(n for n, r in rows.items() if r[8]) + [
        n for n in (target.server.record.get("pending_restart") or []) if not rows.get(n) or not rows[n][8]
    ]
    return section


def _guc(key: str) -> str:
    return SEED_NAMES.get(key, key).lower()


def _apply_reload(ports: Ports, server: servers.Server) -> str:
    if server.kind == clusters.KIND:
        return ports.cluster_engine.reconfigure(clusters.cluster_spec(server.record))
    said = ports.engine.provision(instances.server_spec(server.record))
    with ports.sql.session(server.id, statement_timeout_ms=5_000) as session:
        session.execute(RELOAD_SQL)
    return f"{said}; reloaded"


def update(
    ports: Ports, caller: Principal, target_id: str | None, configuration: dict[str, Any], apply_immediately: bool,
    schedule_restart: str | None,
) -> dict[str, Any]:  # fmt: skip
    if target_id is None:
        raise ValidationFailed(
            "section DATABASE changes one server: give targetId", details={"field": "targetId"}
        )
    if not configuration:
        raise ValidationFailed("configuration is empty", details={"field": "configuration"})
    (target,) = servers.targets(ports, caller, target_id, None, what="its settings")
    server = target.server
    wanted = {_guc(k): v for k, v in configuration.items()}
    managed = sorted(n for n in wanted if forbidden(n))
    if managed:
        raise ValidationFailed(
            f"managed by the platform, not settable: {', '.join(managed)} (programs, libraries, files, durability, "
            "replication and archiving stay the platform's)",
            details=[{"field": f"configuration.{n}", "message": "managed"} for n in managed],
        )
    rows = read_rows(ports, target, list(wanted))
    unknown = [n for n in wanted if n not in rows]
    if unknown:
        raise ValidationFailed(
            f"no such setting: {', '.join(unknown)}",
            details=[{"field": f"configuration.{n}", "message": "unknown setting"} for n in unknown],
        )
    values: dict[str, str] = {}
    restart: list[str] = []
    for name, value in wanted.items():
        row = rows[name]
        if row[7] == "internal":
            raise _invalid(name, "is read-only (fixed when the server was built)", "none")
        text, number = normalized(row, value)
        if name == "shared_buffers" and number is not None:
            factor = _unit_factor(row[2])
            limit = int(server.record.get("memory") or server.record.get("memory_mb") or 1024) * 1024 * 1024
            if factor and number * factor[1] > SHARED_BUFFERS_SHARE * limit:
                raise _invalid(name, f"{text} is more than half of the server's {limit // 1048576} MB of memory",
                               f"at most {int(SHARED_BUFFERS_SHARE * limit // 1048576)}MB")  # fmt: skip
        values[name] = text
        if row[7] == "postmaster":
            restart.append(name)
    when = None
    if schedule_restart:
        try:
            when = datetime.fromisoformat(schedule_restart.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationFailed(f"scheduleRestart {schedule_restart!r} is not an ISO 8601 time",
                                   details={"field": "scheduleRestart"}) from None  # fmt: skip
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        if when <= datetime.now(UTC):
            raise ValidationFailed(
                "scheduleRestart is not in the future", details={"field": "scheduleRestart"}
            )
    record = server.record
    if record.get("status") != "running":
        raise InvalidState(
            f"{server.kind} {server.id} is {record.get('status')}", details={"status": record.get("status")}
        )
    old = {n: str(rows[n][10]) for n in values}
    settings = {**(record.get("settings") or {}), **values}
    pending = sorted(set(record.get("pending_restart") or []) | set(restart))
    ports.history.append_all([
        audit.action_event(
            action="system.configuration", resource=f"{server.id}/settings", target_id=server.id, user_id=caller.sub,
            tenant_id=str(record["tenant_id"]), succeeded=True,
            details={"section": "DATABASE", "changes": {n: {"old": old[n], "new": values[n]} for n in values},
                     "restart": restart, "apply_immediately": apply_immediately, "schedule_restart": schedule_restart},
            retention_days=ports.settings.audit_retention_days,
        )
    ])  # fmt: skip
    operation_id = None
    if restart and apply_immediately:
        params = {"kind": server.kind, "restart": restart, "lowered": _lowered(rows, values, restart)}
        resources.begin(
            ports, caller, server.rtype, record, action=f"settings {', '.join(restart)} (restart)",
            transitional="restarting", workflow=CONFIGURE, params=params,
            changes={"settings": settings, "pending_restart": pending},
        )  # fmt: skip
        operation_id = (ports.store.get(server.kind, server.id) or {}).get("operation_id")
        said = "restart started"
    else:
        stored = ports.store.update(
            server.kind, server.id, {"settings": settings, "pending_restart": pending if restart else record.get("pending_restart") or [],
                                     "updated_at": utcnow_iso()}, record["revision"],
        )  # fmt: skip
        said = _apply_reload(ports, servers.Server(server.kind, stored))
        if restart and when is not None:
            name = f"{SCHEDULE_PREFIX}{hashlib.sha256(f'{server.id}|{when.isoformat()}'.encode()).hexdigest()[:16]}"
            ports.scheduler.put(Schedule(name, f"at({when.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')})",
                                         {"task": RESTART_TASK, "kind": server.kind, "id": server.id, "schedule_name": name,
                                          "restart": restart, "lowered": _lowered(rows, values, restart)}))  # fmt: skip
            said += f"; restart scheduled at {when.isoformat()}"
    fresh = servers.get(ports, server.kind, server.id)
    assert fresh is not None
    section = database_section(ports, servers.Target(fresh), list(values))
    return {
        "section": "DATABASE", "targetId": server.id, "applied": {n: values[n] for n in values if n not in restart},
        "pendingRestart": section["pendingRestart"], "operationId": operation_id,
        "scheduledRestart": when.astimezone(UTC).isoformat().replace("+00:00", "Z") if when else None,
        "previous": old, "message": said, "database": section,
    }  # fmt: skip


def _lowered(rows: dict[str, tuple[Any, ...]], values: dict[str, str], restart: list[str]) -> bool:
    for name in restart:
        if name in HOT_STANDBY_MINIMUMS:
            try:
                if float(values[name]) < float(rows[name][1]):
                    return True
            except ValueError:
                continue
    return False


# --- the restart operation -----------------------------------------------------------------------


def _server(ctx: StepContext) -> servers.Server:
    server = servers.get(ctx.ports, ctx.params["kind"], ctx.resource_id)
    if server is None:
        raise InvalidState(f"{ctx.params['kind']} {ctx.resource_id} no longer exists")
    return server


def _apply(ctx: StepContext) -> str:
    server = _server(ctx)
    if server.kind == clusters.KIND:
        return ctx.ports.cluster_engine.reconfigure(clusters.cluster_spec(server.record))
    return ctx.ports.engine.provision(instances.server_spec(server.record))


def _restart(ctx: StepContext) -> str:
    server = _server(ctx)
    if server.kind != clusters.KIND:
        return ctx.ports.engine.restart(instances.server_spec(server.record))
    spec = clusters.cluster_spec(server.record)
    members = ctx.ports.cluster_engine.members(server.id)
    # Raising a standby minimum: replicas first (a standby never below its primary); lowering
    # one: the primary first, for the same reason.
    lowered = bool(ctx.params.get("lowered"))
    ordered = sorted(members, key=lambda m: (m.role == "primary") != lowered)
    return "; ".join(ctx.ports.cluster_engine.restart_node(spec, m.node_id) for m in ordered) or "no node"


def _mark_running(ctx: StepContext) -> str:
    server = _server(ctx)
    reason = f"restarted for {', '.join(ctx.params.get('restart') or [])}"
    ctx.ports.store.update(server.kind, server.id, {"pending_restart": []}, server.record["revision"])
    fresh = _server(ctx)
    if fresh.record.get("status") != "restarting":
        return f"{fresh.kind} stays {fresh.record.get('status')}"
    if fresh.kind == clusters.KIND:
        clusters.refresh_topology(ctx.ports, fresh.record, status="running", status_reason=reason)
    else:
        resources.set_status(ctx, instances.INSTANCE, "running", reason)
    return reason


def _failed(ctx: StepContext, error: str) -> None:
    server = servers.get(ctx.ports, ctx.params.get("kind", ""), ctx.resource_id)
    if server is not None and server.record.get("status") == "restarting":
        status = "running" if server.kind == clusters.KIND else "failed"
        ctx.ports.store.update(server.kind, server.id, {"status": status, "status_reason": f"configuration restart failed: {error}",
                                                        "updated_at": utcnow_iso()})  # fmt: skip


WORKFLOWS = (
    Workflow(CONFIGURE, (("apply", _apply), ("restart", _restart), ("mark_running", _mark_running)), _failed),
)


def scheduled_restart(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """The at() schedule of a planned restart: start the operation when the server runs."""
    name = str(detail.get("schedule_name") or "")
    server = servers.get(ports, str(detail.get("kind")), str(detail.get("id")))
    lines = []
    if server is None or server.record.get("status") != "running":
        lines.append(f"{name}: {detail.get('id')} is gone or not running: no restart")
    else:
        op = operations.new_operation(CONFIGURE, server.id, server.record["tenant_id"], {
            "kind": server.kind, "restart": detail.get("restart") or [], "lowered": bool(detail.get("lowered"))})  # fmt: skip
        changes = {"status": "restarting", "status_reason": f"planned restart ({name})", "operation_id": op["id"],
                   "updated_at": utcnow_iso()}  # fmt: skip
        operations.submit_with(
            ports, Update(server.kind, server.id, changes, expected_revision=server.record["revision"]), op
        )
        lines.append(f"{name}: restart of {server.id} started (operation {op['id']})")
    if name:
        ports.scheduler.delete(name)
    return lines
