"""`GET` / `PUT /api/v1/system/configuration`, sections PERFORMANCE, MAINTENANCE, MONITORING
and BACKUP: pgfleet's own settings of one tenant, each read by the code it steers at the
moment it runs, so a change takes effect at once:

| section | setting | drives |
|---|---|---|
| PERFORMANCE | slowQueryMs | the slow rule of performance/queries/analysis (POOR, CRITICAL at 5x) |
| PERFORMANCE | indexBloatPercent | BLOATED in performance/indexes/analysis; maintenance's reindex_bloated_indexes |
| PERFORMANCE | cacheHitTarget | performance/cache/analysis: its advice and the shared_buffers recommendation |
| MAINTENANCE | vacuumCostDelayMs | vacuum_cost_delay of a maintenance run with ioLimitMBPS (the cost limit follows) |
| MAINTENANCE | maintenanceWorkMemMB | maintenance_work_mem of a run without memoryLimitMB (null: the server's) |
| MAINTENANCE | idleConnectionDays | cleanup/data SESSION without a custom retention |
| MONITORING | captureIntervalMinutes | how often the metric capture samples the tenant's servers |
| MONITORING | metricRetentionDays | the TTL of new samples and hour chunks; cleanup MONITORING and CLEANUP tasks |
| MONITORING | alertThresholds | each alert rule's threshold (the rules' own store: alerts/rules/{ruleName}) |
| BACKUP | retentionDays | a backup's retention when its resource has no schedule; default schedules' |
| BACKUP | fullBackupCron, incrementalBackupCron | the schedule every new instance and cluster gets |

A tenant token changes its own tenant; a platform token names one (`tenantId`), or a server
whose tenant it is (`targetId`). A change is validated whole before anything is written
(unknown setting, out of range: 422, nothing changed), stored as the tenant's overrides
(pgfleet.core.tenant_settings; null puts a setting back to its default) and audited with the
old and the new effective value of each setting given.
"""

from __future__ import annotations

import math
from typing import Any

import annotated_types
from pydantic import Field, ValidationError
from pydantic.alias_generators import to_camel

from pgfleet.core import audit, tenant_settings
from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import ValidationFailed
from pgfleet.core.wire import StrictCamelModel
from pgfleet.domains import archive, maintenance, monitoring, performance, servers


class PerformanceSettings(StrictCamelModel):
    slow_query_ms: float = Field(
        default=performance.SLOW_MS, ge=1, le=60_000,
        description="A statement is slow from this mean (ms) over 100 calls; CRITICAL from 5 times it.",
    )  # fmt: skip
    index_bloat_percent: float = Field(
        default=performance.BLOAT_PERCENT, ge=5, le=95,
        description="An index of 10 MB or more is BLOATED from this estimated bloat (%); reindex rebuilds it.",
    )  # fmt: skip
    cache_hit_target: float = Field(
        default=performance.HIT_TARGET, ge=0.5, le=0.9999,
        description="The cache hit ratio goal: under it, cache analysis advises and may size shared_buffers up.",
    )  # fmt: skip


class MaintenanceSettings(StrictCamelModel):
    vacuum_cost_delay_ms: int = Field(
        default=maintenance.VACUUM_COST_DELAY_MS, ge=1, le=100,
        description="vacuum_cost_delay of a run limited by ioLimitMBPS (its cost limit is computed with it).",
    )  # fmt: skip
    maintenance_work_mem_mb: int | None = Field(
        default=None, ge=1, le=65_536, alias="maintenanceWorkMemMB",
        description="maintenance_work_mem of a run that sets no memoryLimitMB; null: the server's own.",
    )  # fmt: skip
    idle_connection_days: float = Field(
        default=maintenance.IDLE_CONNECTION_DAYS, ge=0.01, le=30,
        description="SESSION cleanup ends the platform's sessions idle longer than this (without a custom one).",
    )  # fmt: skip


class MonitoringSettings(StrictCamelModel):
    capture_interval_minutes: int = Field(
        default=monitoring.CAPTURE_INTERVAL_MINUTES, ge=1, le=monitoring.MAX_CAPTURE_INTERVAL_MINUTES,
        description="Minutes between two metric samples of a server of the tenant.",
    )  # fmt: skip
    metric_retention_days: int = Field(
        default=monitoring.METRIC_RETENTION_DAYS, ge=1, le=monitoring.METRIC_RETENTION_DAYS,
        description="Days a sample is kept (new samples); MONITORING cleanup purges past it.",
    )  # fmt: skip
    alert_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Each alert rule's threshold, by rule name (GET /api/v1/monitoring/alerts/rules for units); "
        "a change names only the rules it changes, null puts one back to its default.",
    )


class BackupSettings(StrictCamelModel):
    retention_days: int = Field(
        default=archive.records.DEFAULT_RETENTION.days, ge=1, le=3650,
        description="Days a backup is kept when its resource has no schedule saying otherwise.",
    )  # fmt: skip
    full_backup_cron: str | None = Field(
        default=None, max_length=256,
        description="The full backup schedule of every new instance and cluster (cron(...) or rate(...)); null: none.",
    )  # fmt: skip
    incremental_backup_cron: str | None = Field(
        default=None,
        max_length=256,
        description="The incremental backup schedule of new resources; null: none.",
    )


MODELS: dict[str, type[StrictCamelModel]] = {
    "performance": PerformanceSettings,
    "maintenance": MaintenanceSettings,
    "monitoring": MonitoringSettings,
    "backup": BackupSettings,
}
# Kept in the alert rules' own store (monitoring), not in the tenant's settings record.
RULES_FIELD = "alert_thresholds"
WHEN = {
    "performance": "the next analysis of the tenant's servers uses them",
    "maintenance": "the next maintenance run and cleanup of the tenant use them",
    "monitoring": "the next capture (within a minute) and the next alert evaluation use them",
    "backup": "the next backup and the next instance or cluster created in the tenant use them",
}


# --- scope -------------------------------------------------------------------------------------------


def tenant_of(ports: Ports, caller: Principal, tenant_id: str | None, target_id: str | None) -> str | None:
    """The tenant whose settings a call reads or changes: `tenantId` (a tenant token: only its
    own, else 404), else the tenant of `targetId`, else the caller's own; None for a platform
    token that names neither."""
    tenant = tenant_scope(caller, tenant_id)
    if tenant_id is None and target_id is not None:
        (target,) = servers.targets(ports, caller, target_id, None, require_running=False, what="its tenant")
        tenant = target.tenant_id
    return None if tenant in (None, "*") else tenant


# --- reading -----------------------------------------------------------------------------------------


def section(ports: Ports, tenant: str, name: str) -> dict[str, Any]:
    """The section's effective values (defaults merged with the tenant's overrides), camelCase."""
    values = {**tenant_settings.overrides(ports, tenant, name)}
    if name == "monitoring":
        values[RULES_FIELD] = {rule: r["threshold"] for rule, r in monitoring.rules_of(ports, tenant).items()}
    return MODELS[name].model_validate(values).model_dump(mode="json", by_alias=True)


def sections(ports: Ports, tenant: str) -> dict[str, dict[str, Any]]:
    return {name: section(ports, tenant, name) for name in MODELS}


# --- validating -------------------------------------------------------------------------------------


def _wire(model: type[StrictCamelModel], field: str) -> str:
    """A setting's wire name (camelCase, or its own alias: `maintenanceWorkMemMB`)."""
    return model.model_fields[field].alias or to_camel(field)


def _names(model: type[StrictCamelModel]) -> dict[str, str]:
    """Every accepted spelling of the model's settings -> its snake_case name."""
    return {**{_wire(model, f): f for f in model.model_fields}, **{f: f for f in model.model_fields}}


def _allowed(model: type[StrictCamelModel], field: str) -> str:
    info = model.model_fields[field]
    low = next((m.ge for m in info.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in info.metadata if isinstance(m, annotated_types.Le)), None)
    if low is not None and high is not None:
        return f"{low} to {high}" + (", or null (the default)" if not info.is_required() else "")
    if field.endswith("_cron"):
        return "cron(...) or rate(...) expression, or null (none)"
    return str(info.annotation)


def _invalid(section_name: str, key: str, message: str, allowed: str) -> ValidationFailed:
    field = f"configuration.{key}"
    return ValidationFailed(
        f"{field}: {message} (allowed: {allowed})",
        details=[{"field": field, "section": section_name.upper(), "message": message, "allowed": allowed}],
    )


def _given(name: str, configuration: dict[str, Any]) -> dict[str, Any]:
    """The settings given, by snake_case name; 422 for a name the section does not know."""
    model = MODELS[name]
    names = _names(model)
    unknown = [k for k in configuration if k not in names]
    if unknown:
        known = ", ".join(_wire(model, f) for f in model.model_fields)
        raise ValidationFailed(
            f"unknown setting(s) of section {name.upper()}: {', '.join(unknown)} (known: {known})",
            details=[{"field": f"configuration.{k}", "message": "unknown setting", "known": known.split(", ")}
                     for k in unknown],
        )  # fmt: skip
    return {names[k]: v for k, v in configuration.items()}


def _checked(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The given values validated by the section's model (null: back to the default), crons
    normalized as the scheduler runs them."""
    model = MODELS[name]
    present = {k: v for k, v in given.items() if v is not None and k != RULES_FIELD}
    try:
        parsed = model.model_validate(present)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _names(model)[str(first["loc"][0])]
        raise _invalid(name, _wire(model, field), first["msg"], _allowed(model, field)) from None
    out = {k: (getattr(parsed, k) if k in present else None) for k in given if k != RULES_FIELD}
    for field in ("full_backup_cron", "incremental_backup_cron"):
        if out.get(field):
            try:
                out[field] = archive.schedules.normalized(out[field], to_camel(field))
            except ValidationFailed as exc:
                raise _invalid(name, to_camel(field), exc.message, _allowed(model, field)) from None
    return out


def _thresholds(value: Any) -> dict[str, float | None]:
    """`alertThresholds` given: rule name -> a finite number within the rule's unit, or null."""
    if not isinstance(value, dict) or not value:
        raise _invalid("monitoring", "alertThresholds", "expects an object of rule name -> threshold",
                       f"rules {', '.join(sorted(monitoring.ALERT_RULES))}")  # fmt: skip
    out: dict[str, float | None] = {}
    for rule, threshold in value.items():
        key = f"alertThresholds.{rule}"
        if rule not in monitoring.ALERT_RULES:
            raise _invalid("monitoring", key, "no such alert rule", ", ".join(sorted(monitoring.ALERT_RULES)))
        if threshold is None:
            out[rule] = None
            continue
        ratio = monitoring.ALERT_RULES[rule].unit == "ratio"
        allowed = (
            "0 to 1 (a ratio), or null (the default)"
            if ratio
            else "a number of 0 or more, or null (the default)"
        )
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
        ):
            raise _invalid("monitoring", key, f"{threshold!r} is not a number", allowed)
        if threshold < 0 or (ratio and threshold > 1):
            raise _invalid("monitoring", key, f"{threshold} is outside its range", allowed)
        out[rule] = float(threshold)
    return out


# --- changing ----------------------------------------------------------------------------------------


def update(
    ports: Ports, caller: Principal, name: str, tenant: str | None, configuration: dict[str, Any]
) -> dict[str, Any]:
    """Validate, store and audit a change of one section of `tenant`; returns the response:
    the section's new effective values, and the old and new value of each setting given."""
    if tenant is None:
        raise ValidationFailed(
            f"section {name.upper()} is a tenant's: give tenantId (or a targetId of that tenant)",
            details={"field": "tenantId"},
        )
    given = _given(name, configuration)
    values = _checked(name, given)
    rules = _thresholds(given[RULES_FIELD]) if RULES_FIELD in given else {}
    before = section(ports, tenant, name)
    if values:
        tenant_settings.save(
            ports, tenant, name, {**tenant_settings.overrides(ports, tenant, name), **values}
        )
    for rule, threshold in rules.items():
        monitoring.set_rule(ports, tenant, rule, {"threshold": threshold})
    after = section(ports, tenant, name)
    wire = {k: _wire(MODELS[name], k) for k in values}
    changes = {wire[k]: {"old": before[wire[k]], "new": after[wire[k]]} for k in values}
    changes.update({f"alertThresholds.{r}": {"old": before["alertThresholds"][r], "new": after["alertThresholds"][r]}
                    for r in rules})  # fmt: skip
    ports.history.append_all([
        audit.action_event(
            action="system.configuration", resource=f"tenant/{tenant}/{name}", target_id=None, user_id=caller.sub,
            tenant_id=tenant, succeeded=True, details={"section": name.upper(), "changes": changes},
            retention_days=ports.settings.audit_retention_days,
        )
    ])  # fmt: skip
    changed = sorted(k for k, c in changes.items() if c["old"] != c["new"])
    return {
        "section": name.upper(), "tenantId": tenant, "targetId": None,
        "applied": {k: c["new"] for k, c in changes.items()}, "previous": {k: c["old"] for k, c in changes.items()},
        "pendingRestart": [], "operationId": None, "scheduledRestart": None,
        "message": (f"changed {', '.join(changed)}: {WHEN[name]}" if changed else "no value changed"),
        name: after,
    }  # fmt: skip
