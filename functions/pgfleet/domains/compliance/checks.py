"""Evaluating controls: the SQL controls of one server (one session for the server-wide
queries, one per database for the per-database ones), judged by their rules, each outcome
with its evidence: the query, the server, the database(s), the time and the rows returned.

A server that does not run or cannot be reached gives ERROR outcomes (never a pass), and so
does a statement that fails; the other controls of the server are still judged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, ServiceError
from pgfleet.domains import servers, tenants
from pgfleet.domains.compliance import sql as q
from pgfleet.domains.compliance.catalog import Control

PASS, FAIL, NOT_APPLICABLE, ERROR = "PASS", "FAIL", "NOT_APPLICABLE", "ERROR"
ROWS_KEPT = 20
FINDINGS_KEPT = 25  # per control and server: the rest are counted
VALUE_CHARS = 200
STATEMENT_TIMEOUT_MS = 10_000


@dataclass
class Outcome:
    control_id: str
    scope: str  # a target id, or "platform"
    tenant_id: str
    status: str  # PASS | FAIL | NOT_APPLICABLE | ERROR
    findings: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {"control_id": self.control_id, "scope": self.scope, "tenant_id": self.tenant_id,
                "status": self.status, "findings": self.findings, "evidence": self.evidence}  # fmt: skip

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Outcome:
        return cls(record["control_id"], record["scope"], record["tenant_id"], record["status"],
                   list(record.get("findings") or []), dict(record.get("evidence") or {}))  # fmt: skip


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


def kept_rows(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [[_cell(v) for v in row] for row in rows[:ROWS_KEPT]]


# --- rules -----------------------------------------------------------------------------------


def judge(control: Control, rows: list[tuple[Any, ...]]) -> tuple[str, list[str]]:
    """The rule of a SQL control applied to its rows: (PASS or FAIL, findings)."""
    rule = control.rule
    kind = rule["type"]
    if kind == "no_rows":
        template = str(rule.get("finding") or "{0}")
        if not rows:
            return PASS, []
        listed = [template.format(*row) for row in rows[:FINDINGS_KEPT]]
        more = (
            [f"... and {len(rows) - FINDINGS_KEPT} more (the evidence has the rows)"]
            if len(rows) > FINDINGS_KEPT
            else []
        )
        return FAIL, listed + more
    value = "" if not rows or rows[0][0] is None else str(rows[0][0])
    shown = f"{control.query} = {value!r}"
    if kind == "equals":
        ok = value.strip().lower() == str(rule["value"]).lower()
        return (PASS, []) if ok else (FAIL, [f"{shown}; the rule asks {rule['value']!r}"])
    if kind == "not_in":
        ok = value.strip().lower() not in [str(v).lower() for v in rule["values"]]
        return (PASS, []) if ok else (FAIL, [f"{shown}: it is off"])
    if kind == "list_contains":
        items = [i.strip().strip('"').lower() for i in value.split(",") if i.strip()]
        ok = str(rule["value"]).lower() in items
        return (PASS, []) if ok else (FAIL, [f"{shown}: {rule['value']} is not loaded"])
    raise ValueError(f"control {control.id}: rule {kind!r} is not a SQL rule")


# --- parameters from the metadata store --------------------------------------------------------


def _tenant_records(ports: Ports, target: servers.Target) -> list[dict[str, Any]]:
    # every tenant record: a role that is not on the server (any more) matches no row
    return list(tenants.of_server(ports, target.target_id))


def managed_roles(ports: Ports, target: servers.Target) -> list[str]:
    """The server's app role and every role of its tenants (what customers log in as)."""
    names = [str(target.server.record.get("username") or "")]
    for record in _tenant_records(ports, target):
        names.append(str(record["user"]))
        names += [str(r) for r in (record.get("roles") or {}).values()]
    return sorted({n for n in names if n})


def tenant_databases(ports: Ports, target: servers.Target) -> list[dict[str, str]]:
    """[{role, db}]: each app or tenant role and the one database it belongs to."""
    record = target.server.record
    pairs = [{"role": str(record.get("username")), "db": str(record.get("database"))}]
    for tenant in _tenant_records(ports, target):
        db = str(tenant["database_name"])
        pairs.append({"role": str(tenant["user"]), "db": db})
        pairs += [{"role": str(r), "db": db} for r in (tenant.get("roles") or {}).values()]
    return [p for p in pairs if p["role"] and p["db"] and p["role"] != "None"]


PARAMETERS: dict[str, Callable[[Ports, servers.Target], Any]] = {
    "managed_roles": managed_roles,
    "tenant_databases": tenant_databases,
}


def _params(control: Control, value: Any) -> tuple[Any, ...] | None:
    if control.params is None:
        return None
    if control.params == "tenant_databases":
        text = json.dumps(value)
        return (text, text)
    return (value,)


# --- one server ------------------------------------------------------------------------------------


def _evidence(control: Control, target: servers.Target, databases: list[str], params: Any,
              rows: list[tuple[Any, ...]], at: datetime) -> dict[str, Any]:  # fmt: skip
    return {
        "source": "sql", "query": control.sql_text, "params": params, "target_id": target.target_id,
        "node": target.node, "databases": databases, "at": iso(at), "row_count": len(rows), "rows": kept_rows(rows),
    }  # fmt: skip


def evaluate_server(ports: Ports, target: servers.Target, controls: list[Control]) -> list[Outcome]:
    """Outcomes of the SQL controls of `controls` on one server."""
    chosen = [c for c in controls if c.kind == "sql"]
    if not chosen:
        return []
    tenant = target.tenant_id
    if not target.running:
        status = target.server.record.get("status")
        return [Outcome(c.id, target.target_id, tenant, ERROR, [f"{target.target_id} is {status}: not assessed"],
                        {"source": "sql", "query": c.sql_text, "target_id": target.target_id, "at": iso(datetime.now(UTC))})
                for c in chosen]  # fmt: skip
    params = {c.id: PARAMETERS[c.params](ports, target) for c in chosen if c.params}
    rows: dict[str, list[tuple[Any, ...]]] = {c.id: [] for c in chosen}
    errors: dict[str, str] = {}
    at: dict[str, datetime] = {}
    databases: list[str] = []
    per_database = [c for c in chosen if c.per_database]
    try:
        with ports.sql.session(
            target.target_id, node=target.node, statement_timeout_ms=STATEMENT_TIMEOUT_MS
        ) as s:
            if per_database:
                databases = [str(r[0]) for r in s.fetch_all(q.DATABASES)]
            for c in chosen:
                if c.per_database:
                    continue
                if c.id in params and not params[c.id]:
                    continue  # judged below: nothing to ask
                at[c.id] = datetime.now(UTC)
                try:
                    rows[c.id] = s.fetch_all(q.QUERIES[str(c.query)], _params(c, params.get(c.id)))
                except EngineError as exc:
                    errors[c.id] = f"the query failed: {exc}"
        for database in databases:
            with ports.sql.session(target.target_id, node=target.node, database=database,
                                   statement_timeout_ms=STATEMENT_TIMEOUT_MS) as s:  # fmt: skip
                for c in per_database:
                    at.setdefault(c.id, datetime.now(UTC))
                    try:
                        rows[c.id] += s.fetch_all(q.QUERIES[str(c.query)])
                    except EngineError as exc:
                        errors[c.id] = f"the query failed in database {database}: {exc}"
    except (EngineError, ServiceError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        for c in chosen:
            if c.id not in at or c.per_database:
                errors.setdefault(c.id, f"{target.target_id} cannot be read: {message}")
    out = []
    for c in chosen:
        when = at.get(c.id, datetime.now(UTC))
        dbs = databases if c.per_database else []
        evidence = _evidence(c, target, dbs, params.get(c.id), rows[c.id], when)
        if c.id in errors:
            out.append(Outcome(c.id, target.target_id, tenant, ERROR, [errors[c.id]], evidence))
        elif c.params == "tenant_databases" and len({p["db"] for p in params[c.id]}) < 2:
            out.append(Outcome(c.id, target.target_id, tenant, NOT_APPLICABLE,
                               ["one database on this server: no other tenant's database to reach"], evidence))  # fmt: skip
        elif c.id in params and not params[c.id]:
            out.append(Outcome(c.id, target.target_id, tenant, NOT_APPLICABLE, ["no app or tenant role to check"],
                               evidence))  # fmt: skip
        else:
            status, findings = judge(c, rows[c.id])
            out.append(Outcome(c.id, target.target_id, tenant, status, findings, evidence))
    return out
