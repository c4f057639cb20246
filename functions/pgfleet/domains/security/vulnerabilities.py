"""Vulnerabilities of the servers in scope: read each server's components, match them against
the CVE dataset (pgfleet.domains.security.cves), and track remediation per CVE x component x
server in the metadata store (kind `vulnerability`).

A GET is a scan: a finding seen for the first time is stored OPEN with its discovery date
(the deadline counts from it); a stored finding the server no longer matches becomes PATCHED;
one that matches again after PATCHED is OPEN again. IN_PROGRESS and MITIGATED are set by a user
(`update`). A server that cannot be scanned (not running, unreachable) keeps its stored
findings as they were and is named in `problems`.

End of life: every scanned server gets an `eol` entry for its major (its date from the
dataset, and whether it is past), rather than a synthetic finding without a CVE id, so the
`vulnerabilities` list holds CVEs only.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pgfleet.core import audit, auth
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, NotFound, ServiceError, ValidationFailed
from pgfleet.domains import clusters, servers
from pgfleet.domains.security import cves, vulnerability_sql
from pgfleet.domains.security.cves import Dataset, Match, ServerComponents

KIND = "vulnerability"
PGBACKREST_NEWEST_MAJOR = 15  # as the local backup router: newer majors are backed up by Barman
OPEN_STATES = ("OPEN", "IN_PROGRESS")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def vulnerability_id(cve_id: str, component: str, target_id: str) -> str:
    """Stable per CVE x component x server, so a finding keeps its status across scans."""
    digest = hashlib.sha256(f"{cve_id}|{component}|{target_id}".encode()).hexdigest()
    return f"vul-{digest[:16]}"


# --- reading a server's components -------------------------------------------------------------


def components_of(ports: Ports, target: servers.Target, tools: dict[str, str]) -> ServerComponents:
    """The server's exact version and extensions (every database that accepts connections),
    read through the SQL seam, and the satellite programs that serve it: PgBouncer when it
    has a pooler, pgBackRest (the host's backup tool), Patroni for a cluster."""
    with ports.sql.session(target.target_id, node=target.node) as session:
        row = session.fetch_one(vulnerability_sql.VERSION)
        databases = [str(r[0]) for r in session.fetch_all(vulnerability_sql.DATABASES)]
    if row is None:
        raise EngineError(f"{target.target_id} did not report its version")
    extensions: dict[str, str] = {}
    for database in databases:
        with ports.sql.session(target.target_id, node=target.node, database=database) as session:
            extensions.update({str(n): str(v) for n, v in session.fetch_all(vulnerability_sql.EXTENSIONS)})
    serving: dict[str, str] = {}
    if "pgbouncer" in tools and ports.pooler.state(target.target_id).exists:
        serving["pgbouncer"] = tools["pgbouncer"]
    # Majors past PGBACKREST_NEWEST_MAJOR are backed up by Barman (the local backup router).
    if "pgbackrest" in tools and int(row[0]) // 10000 <= PGBACKREST_NEWEST_MAJOR:
        serving["pgbackrest"] = tools["pgbackrest"]
    if "patroni" in tools and target.server.kind == clusters.KIND:
        serving["patroni"] = tools["patroni"]
    return ServerComponents(
        target.target_id, target.tenant_id, int(row[0]), str(row[1]).split()[0], extensions, serving
    )


# --- tracking ----------------------------------------------------------------------------------


def deadline_of(discovered: datetime, severity: str | None) -> datetime | None:
    days = cves.DEADLINE_DAYS.get(severity) if severity else None
    return discovered + timedelta(days=days) if days is not None else None


def sync(ports: Ports, server: ServerComponents, found: list[Match], now: datetime) -> None:
    """Store what this scan of `server` saw: new findings OPEN, gone ones PATCHED."""
    stored = {
        r["id"]: r for r in ports.store.every(KIND, tenant_id=server.tenant_id, parent_id=server.target_id)
    }
    seen: set[str] = set()
    for m in found:
        vid = vulnerability_id(m.cve.cve_id, m.component, server.target_id)
        seen.add(vid)
        record = stored.get(vid)
        facts = {"installed_version": m.installed, "last_seen_at": _iso(now)}
        if record is None:
            ports.store.create(KIND, {
                "id": vid, "tenant_id": server.tenant_id, "parent_id": server.target_id,
                "target_id": server.target_id, "cve_id": m.cve.cve_id, "component": m.component,
                "discovery_date": _iso(now), "remediation_status": "OPEN", "status_changed_at": _iso(now),
                "compensating_controls": [], "notes": None, "business_impact": None, **facts,
            })  # fmt: skip
        elif record["remediation_status"] == "PATCHED":
            ports.store.update(KIND, vid, {"remediation_status": "OPEN", "status_changed_at": _iso(now),
                                           "reopened_at": _iso(now), **facts})  # fmt: skip
        elif record.get("installed_version") != m.installed:
            ports.store.update(KIND, vid, facts)
    for vid, record in stored.items():
        if vid not in seen and record["remediation_status"] != "PATCHED":
            ports.store.update(KIND, vid, {"remediation_status": "PATCHED", "status_changed_at": _iso(now),
                                           "patched_at": _iso(now)})  # fmt: skip


def view(record: dict[str, Any], dataset: Dataset, now: datetime) -> dict[str, Any]:
    """A stored finding as the API shows it, with its CVE's facts from the dataset."""
    cve = next(
        (c for c in dataset.cves if c.cve_id == record["cve_id"] and c.component == record["component"]), None
    )
    cvss = cve.cvss if cve else None
    severity = cves.severity_of(cvss)
    deadline = deadline_of(datetime.fromisoformat(record["discovery_date"].replace("Z", "+00:00")), severity)
    status = record["remediation_status"]
    name = cves.DISPLAY.get(record["component"], record["component"])
    installed = record.get("installed_version") or "?"
    patch = _patch_version(cve, installed) if cve else None
    return {
        "vulnerability_id": record["id"], "cve_id": record["cve_id"],
        "vulnerability_name": f"{name}: {cve.title}" if cve else f"{name}: {record['cve_id']} (no longer in the dataset)",
        "severity": severity, "cvss_score": cvss,
        "affected_component": f"{name} {installed} on {record['target_id']}",
        "component": record["component"], "installed_version": installed,
        "target_id": record["target_id"], "tenant_id": record["tenant_id"],
        "discovery_date": record["discovery_date"],
        "patch_available": patch is not None, "patch_version": f"{name} {patch}" if patch else None,
        "remediation_status": status,
        "remediation_deadline": _iso(deadline) if deadline else None,
        "overdue": bool(deadline and status in OPEN_STATES and now > deadline),
        "business_impact": record.get("business_impact") or _impact(name, record["target_id"], cvss, severity, cve),
        "compensating_controls": list(record.get("compensating_controls") or []),
        "notes": record.get("notes"),
        "summary": cve.summary if cve else "",
        "references": list(cve.sources) if cve else [],
    }  # fmt: skip


def _patch_version(cve: cves.Cve, installed: str) -> str | None:
    if cve.component != "postgresql":
        return ".".join(map(str, cve.fixed_version)) if cve.fixed_version else None
    try:
        major = cves.version_tuple(installed)[0]
    except ValueError:
        return None
    minor = cve.fixed_in.get(major)
    return f"{major}.{minor}" if minor is not None else None


def _impact(name: str, target_id: str, cvss: float | None, severity: str | None, cve: cves.Cve | None) -> str:
    """A sentence from the facts at hand (component, server, score), never a guess."""
    what = cve.title if cve else "a CVE"
    if cvss is None:
        return f"Unscored: the dataset has no CVSS v3 score for this CVE; {name} of {target_id} is affected ({what})."
    return (
        f"{severity.title() if severity else ''} (CVSS {cvss}): {name} of {target_id} is affected ({what})."
    )


# --- the API -----------------------------------------------------------------------------------


def scan(
    ports: Ports,
    principal: Principal,
    target_id: str | None,
    tenant_id: str | None,
    severity: str | None,
    status: str | None,
    component: str | None,
) -> dict[str, Any]:
    """The findings of the servers in scope (scanning the running ones now), filtered."""
    dataset = cves.load(ports.settings.home)
    found = servers.targets(
        ports, principal, target_id, tenant_id, require_running=False, what="its components"
    )
    now = _now()
    tools = ports.engine.component_versions() if found else {}
    problems: list[dict[str, str]] = []
    eol: list[dict[str, Any]] = []
    inventory: list[dict[str, str]] = []
    for target in found:
        if not target.running:
            problems.append({"target_id": target.target_id,
                             "reason": f"it is {target.server.record.get('status')}: its last findings are shown"})  # fmt: skip
            continue
        try:
            parts = components_of(ports, target, tools)
        except (EngineError, ServiceError) as exc:
            problems.append({"target_id": target.target_id, "reason": f"cannot be read: {exc}"})
            continue
        sync(ports, parts, cves.match(dataset, parts), now)
        eol.append(_eol(dataset, parts, now.date()))
        inventory.append(
            {"target_id": parts.target_id, "component": "postgresql", "version": parts.server_version}
        )
        inventory += [{"target_id": parts.target_id, "component": f"extension:{n}", "version": v}
                      for n, v in sorted(parts.extensions.items())]  # fmt: skip
        inventory += [
            {"target_id": parts.target_id, "component": n, "version": v}
            for n, v in sorted(parts.tools.items())
        ]
    items = [
        view(r, dataset, now)
        for t in found
        for r in ports.store.every(KIND, tenant_id=t.tenant_id, parent_id=t.target_id)
    ]
    if severity:
        items = [i for i in items if i["severity"] == severity]
    if status:
        items = [i for i in items if i["remediation_status"] == status]
    if component:
        needle = component.lower()
        items = [i for i in items if needle in i["component"] or needle in i["affected_component"].lower()]
    items.sort(
        key=lambda i: (
            i["remediation_status"] == "PATCHED",
            -(i["cvss_score"] or 0.0),
            i["cve_id"] or "",
            i["target_id"],
        )
    )
    bands = {s: sum(1 for i in items if i["severity"] == s) for s in cves.SEVERITIES}
    summary = {
        "total_vulnerabilities": len(items), "critical": bands["CRITICAL"], "high": bands["HIGH"],
        "medium": bands["MEDIUM"], "low": bands["LOW"], "unscored": sum(1 for i in items if i["severity"] is None),
        "overdue_remediations": sum(1 for i in items if i["overdue"]),
    }  # fmt: skip
    info = {
        "origin": dataset.origin,
        "retrieved": dataset.retrieved,
        "source": list(dataset.source),
        "cves": len(dataset.cves),
    }
    return {"vulnerabilities": items, "summary": summary, "eol": eol, "components": inventory, "dataset": info,
            "problems": problems}  # fmt: skip


def _eol(dataset: Dataset, parts: ServerComponents, today: date) -> dict[str, Any]:
    major, _ = cves.pg_version(parts.server_version_num)
    when = dataset.eol.get(major)
    return {
        "target_id": parts.target_id, "major": major, "server_version": parts.server_version,
        "eol_date": when.isoformat() if when else None, "past_eol": (today > when) if when else None,
        "days_to_eol": (when - today).days if when else None,
    }  # fmt: skip


def update(ports: Ports, principal: Principal, vid: str, body: Any) -> dict[str, Any]:
    """Set a finding IN_PROGRESS or MITIGATED (with its controls and notes), audited."""
    record = ports.store.get(KIND, vid)
    tenant = auth.tenant_scope(principal, None)
    if record is None or (tenant is not None and record["tenant_id"] != tenant):
        raise NotFound(f"vulnerability {vid} not found")
    if record["remediation_status"] == "PATCHED":
        raise InvalidState(f"vulnerability {vid} is PATCHED: the server no longer runs an affected version",
                           details={"status": "PATCHED"})  # fmt: skip
    if body.remediation_status == "MITIGATED" and not (
        body.compensating_controls or record.get("compensating_controls")
    ):
        raise ValidationFailed("MITIGATED needs the compensating controls that mitigate it",
                               details={"field": "compensating_controls"})  # fmt: skip
    now = _now()
    changes: dict[str, Any] = {"remediation_status": body.remediation_status, "status_changed_at": _iso(now),
                               "updated_by": principal.sub}  # fmt: skip
    if body.compensating_controls:
        changes["compensating_controls"] = list(body.compensating_controls)
    if body.notes is not None:
        changes["notes"] = body.notes
    if body.business_impact is not None:
        changes["business_impact"] = body.business_impact
    updated = ports.store.update(KIND, vid, changes)
    before = {k: record.get(k) for k in changes if k not in ("status_changed_at", "updated_by")}
    ports.history.append_all([
        audit.action_event(
            action="security.vulnerability.update", resource=f"{record['target_id']}/{vid}",
            target_id=record["target_id"], user_id=principal.sub, tenant_id=record["tenant_id"], succeeded=True,
            details={"vulnerability_id": vid, "cve_id": record["cve_id"], "before": before,
                     "after": {k: updated.get(k) for k in before}},
            retention_days=ports.settings.audit_retention_days,
        )
    ])  # fmt: skip
    return view(updated, cves.load(ports.settings.home), now)
