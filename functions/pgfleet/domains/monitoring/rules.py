"""Alert rules, evaluated on every metric capture for every server it sampled.

Each rule turns a server's sample (and, for the rules that need time, its recent samples) into
a `Condition`; `service.observe` keeps one ACTIVE alert per rule and server, updates its value
while it fires, and resolves it by itself when the condition clears. The defaults are the
issue's (and the sources named beside them); a tenant changes a rule's threshold, duration,
severity or switches it off with `PUT /api/v1/monitoring/alerts/rules/{ruleName}`.

Quota alerts (storage and connections over the quota's `alert_thresholds`) are the quotas
domain's: it observes them on its own schedule with the same `observe`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pgfleet.core import schedule_expressions
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, NotFound, PgfleetError
from pgfleet.core.models import utcnow_iso
from pgfleet.domains import archive
from pgfleet.domains.monitoring import service
from pgfleet.domains.monitoring.models import AlertAction
from pgfleet.domains.monitoring.samples import STREAM, Sample
from pgfleet.domains.monitoring.service import Condition, observe

log = logging.getLogger(__name__)

CONFIG_KIND = "alert_rule_config"
MB = 1024 * 1024
XID_WRAPAROUND = 2**31 - 1
# Alerts raised less than this before a sample belong to the same capture round.
SAME_CAPTURE = timedelta(seconds=30)


@dataclass(frozen=True)
class Rule:
    """One rule's defaults: it fires when `metric` crosses `threshold` (above, unless
    `below`) for `for_minutes` (0: on the sample itself)."""

    name: str
    description: str
    category: str
    severity: str
    threshold: float
    unit: str
    for_minutes: int = 0
    below: bool = False
    source: str = ""


RULES: tuple[Rule, ...] = (
    Rule("server_down", "the server does not accept connections (consecutive samples)", "AVAILABILITY",
         "CRITICAL", 2, "samples", source="issue 14: down for 2 samples"),
    Rule("replication_lag_seconds", "a replica replays WAL later than this", "AVAILABILITY", "HIGH", 30,
         "seconds", source="issue 14; postgres-mixin PostgreSQLReplicationLag"),
    Rule("replication_lag_bytes", "a replica is this far behind in WAL", "AVAILABILITY", "HIGH", 100 * MB,
         "bytes", source="issue 14"),
    Rule("failover", "the primary changed (new leader or timeline) within this many minutes", "AVAILABILITY",
         "HIGH", 15, "minutes", source="issue 14"),
    Rule("backup_stale", "no backup completed for the schedule's interval plus this many seconds",
         "AVAILABILITY", "HIGH", 3600, "seconds", source="issue 14: schedule plus 1 hour"),
    Rule("backup_failed", "the newest backup or its verification failed", "AVAILABILITY", "HIGH", 1, "count",
         source="issue 14"),
    Rule("cache_hit_ratio", "the cache hit ratio stays under this", "PERFORMANCE", "MEDIUM", 0.98, "ratio",
         for_minutes=10, below=True, source="issue 14; PgHero cache hit rate 0.99 advice"),
    Rule("rollback_ratio", "the share of transactions that roll back is over this", "PERFORMANCE", "MEDIUM",
         0.10, "ratio", source="issue 14; postgres-mixin PostgreSQLHighRollbackRate"),
    Rule("xid_wraparound", "transaction ids left before wraparound fall under this", "AVAILABILITY", "HIGH",
         1.5e9, "xids", below=True, source="issue 14"),
    Rule("idle_in_transaction", "a session stays idle in transaction longer than this", "PERFORMANCE",
         "MEDIUM", 600, "seconds", source="issue 14: 10 minutes"),
    Rule("blocking_sessions", "sessions hold locks others wait for", "PERFORMANCE", "MEDIUM", 0, "sessions",
         source="issue 14; the locks domain"),
    Rule("deadlocks", "deadlocks per minute over this", "PERFORMANCE", "HIGH", 5, "per minute",
         source="issue 14"),
)  # fmt: skip
BY_NAME = {rule.name: rule for rule in RULES}
OVERRIDABLE = ("threshold", "for_minutes", "severity", "enabled")


# --- configuration -------------------------------------------------------------------------------


def rules_of(ports: Ports, tenant: str) -> dict[str, dict[str, Any]]:
    """Every rule as it applies to `tenant`: the defaults with the tenant's overrides."""
    stored = (ports.store.get(CONFIG_KIND, tenant) or {}).get("rules") or {}
    out = {}
    for rule in RULES:
        values = {"threshold": rule.threshold, "for_minutes": rule.for_minutes, "severity": rule.severity,
                  "enabled": True}  # fmt: skip
        overrides = {k: v for k, v in (stored.get(rule.name) or {}).items() if k in OVERRIDABLE}
        out[rule.name] = {
            "name": rule.name, "description": rule.description, "category": rule.category, "unit": rule.unit,
            "below": rule.below, "source": rule.source, **values, **overrides,
            "overridden": sorted(overrides), "defaults": values,
        }  # fmt: skip
    return out


def set_rule(ports: Ports, tenant: str, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change one rule for a tenant (None values go back to the default). Returns the rule."""
    if name not in BY_NAME:
        raise NotFound(f"alert rule {name} not found", details={"rules": sorted(BY_NAME)})
    record = ports.store.get(CONFIG_KIND, tenant)
    stored = dict((record or {}).get("rules") or {})
    mine = {**(stored.get(name) or {}), **{k: v for k, v in changes.items() if k in OVERRIDABLE}}
    stored[name] = {k: v for k, v in mine.items() if v is not None}
    values = {"rules": stored, "updated_at": utcnow_iso()}
    if record is None:
        try:
            ports.store.create(CONFIG_KIND, {"id": tenant, "tenant_id": tenant, **values})
        except AlreadyExists:
            ports.store.update(CONFIG_KIND, tenant, values)
    else:
        ports.store.update(CONFIG_KIND, tenant, values, record["revision"])
    return rules_of(ports, tenant)[name]


# --- evaluation ----------------------------------------------------------------------------------


def evaluate(ports: Ports, samples: Sequence[Sample]) -> list[str]:
    """Open, keep or resolve the alert of every rule on every sampled server. Returns one
    line per alert opened or resolved. A server whose evaluation fails is named in a line;
    the others are evaluated all the same."""
    lines: list[str] = []
    configs: dict[str, dict[str, dict[str, Any]]] = {}
    for sample in samples:
        tenant = sample.tenant_id
        if tenant not in configs:
            configs[tenant] = rules_of(ports, tenant)
        try:
            conditions = conditions_of(ports, sample, configs[tenant])
        except PgfleetError as exc:
            lines.append(f"{sample.target_id}: alert rules not evaluated: {exc}")
            continue
        for condition in conditions:
            line = observe(
                ports,
                owner_tenant=tenant,
                resource_id=sample.target_id,
                resource_type=sample.server.kind,
                condition=condition,
            )
            if line:
                lines.append(line)
    return lines


Check = Callable[[Ports, Sample, dict[str, Any]], "Condition | None"]


def conditions_of(ports: Ports, sample: Sample, rules: dict[str, dict[str, Any]]) -> list[Condition]:
    """The conditions of every enabled rule on one sample (firing or not). A rule whose
    metric is unknown on this sample (None) yields no condition: its alert stays as it is."""
    out = []
    for name, check in CHECKS.items():
        rule = rules[name]
        if not rule["enabled"]:
            out.append(_condition(rule, False, 0.0, ""))  # switched off: an open alert resolves
            continue
        condition = check(ports, sample, rule)
        if condition is not None:
            out.append(condition)
    return out


def _condition(
    rule: dict[str, Any], firing: bool, value: float, detail: str, actions: list[AlertAction] | None = None
) -> Condition:
    comparison = "under" if rule["below"] else "over"
    description = f"{detail} ({rule['description']}; {comparison} {_fmt(rule['threshold'])} {rule['unit']})"
    return Condition(
        name=rule["name"],
        firing=firing,
        severity=rule["severity"],
        category=rule["category"],
        description=description.strip(),
        metric_value=float(value),
        threshold=float(rule["threshold"]),
        actions=actions or [],
    )


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def _crosses(rule: dict[str, Any], value: float) -> bool:
    return value < rule["threshold"] if rule["below"] else value > rule["threshold"]


def _server_down(ports: Ports, sample: Sample, rule: dict[str, Any]) -> Condition | None:
    """Down in `threshold` consecutive samples (2: this one and the previous). Reconcile, which
    finds a dead postmaster before it restarts it, raises this alert at once (`reconciled_down`);
    such an alert clears only when a sample taken after it finds the server up again."""
    open_alert = service.open_alert(ports, sample.target_id, rule["name"])
    if sample.data.get("up"):
        if open_alert and archive.records.parse_iso(open_alert["triggered_at"]) > sample.at - SAME_CAPTURE:
            return None  # raised during this very capture: the next one says whether it stays
        return _condition(rule, False, 0, f"{sample.target_id} accepts connections")
    down = 2 if (sample.previous or {}).get("up") is False else 1
    firing = down >= rule["threshold"] or open_alert is not None
    detail = f"{sample.target_id} did not accept connections in {down} consecutive sample(s)"
    if sample.data.get("error"):
        detail += f": {sample.data['error']}"
    return _condition(rule, firing, down, detail, [_logs_action(sample.server.kind, sample.target_id)])


def _logs_action(kind: str, target_id: str) -> AlertAction:
    path = f"/api/v1/postgres/{'cluster' if kind == 'cluster' else 'single'}/{target_id}/logs"
    return AlertAction(action_type="READ_LOGS", description="Read the server's log", method="GET", path=path)


def reconciled_down(ports: Ports, record: dict[str, Any], kind: str, why: str) -> str | None:
    """Reconcile found a server that should run not running (and is starting it): that is a
    server_down observation no sample needs to confirm (the postmaster is gone)."""
    rule = rules_of(ports, str(record["tenant_id"]))["server_down"]
    if not rule["enabled"]:
        return None
    condition = _condition(rule, True, rule["threshold"], f"{record['id']} was not running ({why}); reconcile restarts it",
                           [_logs_action(kind, record["id"])])  # fmt: skip
    return observe(ports, owner_tenant=record["tenant_id"], resource_id=record["id"], resource_type=kind,
                   condition=condition)  # fmt: skip


def _threshold(metric: str, what: str) -> Check:
    def check(ports: Ports, sample: Sample, rule: dict[str, Any]) -> Condition | None:
        value = sample.data.get(metric)
        if value is None:
            return None
        return _condition(
            rule,
            _crosses(rule, float(value)),
            float(value),
            f"{sample.target_id}: {what} {_fmt(float(value))}",
        )

    return check


def _replica_lag(metric: str, unit: str) -> Check:
    key = "lag_seconds" if unit == "s" else "lag_bytes"

    def check(ports: Ports, sample: Sample, rule: dict[str, Any]) -> Condition | None:
        value = sample.data.get(metric)
        if value is None:
            return None
        worst = [r for r in sample.data.get("replication") or [] if r.get(key) is not None]
        worst.sort(key=lambda r: r[key], reverse=True)
        who = f" ({worst[0]['name']})" if worst else ""
        shown = f"{float(value):.1f} s" if unit == "s" else f"{float(value) / MB:.1f} MB"
        return _condition(rule, _crosses(rule, float(value)), float(value),
                          f"{sample.target_id}: replication lag {shown}{who}")  # fmt: skip

    return check


def _failover(ports: Ports, sample: Sample, rule: dict[str, Any]) -> Condition | None:
    """A cluster's failover is an event: the alert fires on the sample that sees the leader or
    the timeline change, and stays while that happened within `threshold` minutes. Samples
    that could not read them (a server down) do not count. A single instance has no failover
    (its timeline moves on a restore, which is not one)."""
    if sample.server.kind != "cluster":
        return None
    window = timedelta(minutes=float(rule["threshold"]))
    known = [r for r in _history(ports, sample, window) if r.get("timeline") is not None or r.get("primary")]
    change = None
    for older, newer in zip(known, known[1:], strict=False):
        moved = (
            None not in (older.get("timeline"), newer.get("timeline"))
            and newer["timeline"] > older["timeline"]
        )
        switched = older.get("primary") and newer.get("primary") and older["primary"] != newer["primary"]
        if moved or switched:
            change = (older, newer)
    timeline = float(sample.data.get("timeline") or 0)
    if change is None:
        return _condition(rule, False, timeline, f"{sample.target_id}: no failover")
    older, newer = change
    detail = (f"{sample.target_id}: failover: primary {older.get('primary') or '?'} -> {newer.get('primary') or '?'}, "
              f"timeline {older.get('timeline')} -> {newer.get('timeline')}")  # fmt: skip
    return _condition(rule, True, timeline, detail)


def _cache_hit(ports: Ports, sample: Sample, rule: dict[str, Any]) -> Condition | None:
    """Under the threshold in every sample of the last `for_minutes`, and samples cover them."""
    value = sample.data.get("cache_hit_ratio")
    if value is None:
        return None
    minutes = float(rule["for_minutes"])
    if not _crosses(rule, float(value)):
        return _condition(rule, False, float(value), f"{sample.target_id}: cache hit ratio {value:.4f}")
    recent = _history(ports, sample, timedelta(minutes=minutes))
    ratios = [float(r["cache_hit_ratio"]) for r in recent if r.get("cache_hit_ratio") is not None]
    covered = bool(recent) and _span_minutes(recent) >= minutes - 1.5
    firing = covered and all(_crosses(rule, r) for r in ratios)
    return _condition(rule, firing, float(value),
                      f"{sample.target_id}: cache hit ratio {value:.4f} for {_span_minutes(recent):.0f} min")  # fmt: skip


def _rollback(ports: Ports, sample: Sample, rule: dict[str, Any]) -> Condition | None:
    """Over the threshold, with at least one transaction per second: a handful of rollbacks
    on an idle server is not a rate."""
    ratio = sample.data.get("rollback_ratio")
    if ratio is None:
        return None
    per_second = (sample.data.get("commits_per_second") or 0) + (sample.data.get("rollbacks_per_second") or 0)
    firing = _crosses(rule, float(ratio)) and per_second >= 1
    return _condition(rule, firing, float(ratio),
                      f"{sample.target_id}: {100 * float(ratio):.1f}% of {per_second:.1f} transactions/s roll back")  # fmt: skip


def _blocking(ports: Ports, sample: Sample, rule: dict[str, Any]) -> Condition | None:
    value = sample.data.get("blocking_sessions")
    if value is None:
        return None
    locks = AlertAction(action_type="INSPECT_LOCKS", description="See the blocking chains", method="GET",
                        path=f"/api/v1/locks/blocking?targetId={sample.target_id}")  # fmt: skip
    return _condition(rule, _crosses(rule, float(value)), float(value),
                      f"{sample.target_id}: {value} session(s) block others", [locks])  # fmt: skip


def _backup_stale(ports: Ports, sample: Sample, rule: dict[str, Any]) -> Condition | None:
    """Stale when the schedule should have produced a newer backup more than `threshold`
    seconds ago. No schedule: no expectation, no condition."""
    schedule = ports.store.get(archive.schedules.KIND, sample.target_id)
    if not schedule or not schedule.get("enabled"):
        return None
    expressions = [str(schedule[f]) for f in archive.schedules.TYPES.values() if schedule.get(f)]
    last_at = sample.data.get("last_backup_at")
    if not expressions or not last_at:
        return None
    last = archive.records.parse_iso(last_at)
    due = [d for e in expressions if (d := schedule_expressions.next_after(e, last)) is not None]
    if not due:
        return None
    late = (sample.at - min(due)).total_seconds()
    firing = late > rule["threshold"]
    age = float(sample.data.get("last_backup_age_seconds") or (sample.at - last).total_seconds())
    backup = AlertAction(action_type="BACKUP_NOW", description="Take a backup now", method="POST",
                         path="/api/v1/backup/execute")  # fmt: skip
    return _condition(rule, firing, age,
                      f"{sample.target_id}: last backup {age / 3600:.1f} h ago, due {max(late, 0) / 60:.0f} min ago",
                      [backup])  # fmt: skip


def _backup_failed(ports: Ports, sample: Sample, rule: dict[str, Any]) -> Condition | None:
    """The newest finished physical backup failed, or the newest verification did."""
    found, _ = ports.store.page(
        archive.records.KIND, parent_id=sample.target_id, filters={"logical": False}, page=1, page_size=5,
        newest_first=True,
    )  # fmt: skip
    finished = [b for b in found if b.get("status") in ("completed", "failed")]
    if not finished:
        return None
    newest = finished[0]
    verified = [b for b in found if b.get("verification_status") in ("VERIFIED", "FAILED")]
    problems = []
    if newest.get("status") == "failed":
        problems.append(
            f"backup {newest['id']} failed: {newest.get('error') or newest.get('status_reason') or 'no reason recorded'}"
        )
    if verified and verified[0].get("verification_status") == "FAILED":
        problems.append(f"verification of backup {verified[0]['id']} failed")
    detail = "; ".join(problems) or "the newest backup and verification succeeded"
    return _condition(rule, bool(problems), float(len(problems)), f"{sample.target_id}: {detail}")


def _history(ports: Ports, sample: Sample, window: timedelta) -> list[dict[str, Any]]:
    """The target's samples of the last `window` (this one included), oldest first."""
    page = ports.history.query(
        STREAM, start=sample.at - window, end=sample.at + timedelta(seconds=1), target_id=sample.target_id,
        tenant_id=sample.tenant_id, page_size=500, newest_first=False,
    )  # fmt: skip
    rows = [{**r.data, "_at": r.at} for r in page.items]
    if not rows or rows[-1]["_at"] < sample.at - timedelta(seconds=1):
        rows.append({**sample.data, "_at": sample.at})
    return rows


def _span_minutes(rows: list[dict[str, Any]]) -> float:
    if len(rows) < 2:
        return 0.0
    first: datetime = rows[0]["_at"]
    last: datetime = rows[-1]["_at"]
    return (last - first).total_seconds() / 60


CHECKS: dict[str, Check] = {
    "server_down": _server_down,
    "replication_lag_seconds": _replica_lag("replication_lag_seconds_max", "s"),
    "replication_lag_bytes": _replica_lag("replication_lag_bytes_max", "bytes"),
    "failover": _failover,
    "backup_stale": _backup_stale,
    "backup_failed": _backup_failed,
    "cache_hit_ratio": _cache_hit,
    "rollback_ratio": _rollback,
    "xid_wraparound": _threshold("xid_remaining", "transaction ids left before wraparound:"),
    "idle_in_transaction": _threshold("idle_in_transaction_max_seconds", "longest idle in transaction (s):"),
    "blocking_sessions": _blocking,
    "deadlocks": _threshold("deadlocks_per_minute", "deadlocks per minute:"),
}
assert set(CHECKS) == set(BY_NAME), "every rule has a check"
