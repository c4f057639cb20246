"""Judging controls for an assessment or a re-verification: every SQL control and server fact
on every server of a scope, the platform controls once (an attested control from the
evidence a compliance officer accepted), and the results per control with their scores.

A control's score is the share of its scopes that pass (NOT_APPLICABLE ones aside); its
result COMPLIANT (every scope passes), NON_COMPLIANT (one fails), WARNING (none fails, one
could not be assessed) or NOT_APPLICABLE; the assessment's score is the mean of its
controls' scores. Nothing is scored that was not judged.
"""

from __future__ import annotations

import json
import statistics
from datetime import timedelta
from typing import Any

from pgfleet.core import auth
from pgfleet.core.context import Ports
from pgfleet.domains import servers
from pgfleet.domains.compliance import catalog, checks, facts, task_records
from pgfleet.domains.compliance.assessments import PRIORITY, now
from pgfleet.domains.compliance.catalog import PLATFORM, Catalog, Control
from pgfleet.domains.compliance.checks import ERROR, FAIL, NOT_APPLICABLE, PASS, Outcome, iso

MAX_FINDINGS = 100  # per control, over every scope
RECORD_BUDGET = 300_000  # bytes of JSON a record may hold (DynamoDB items stop at 400 KB)


def scope_targets(ports: Ports, tenant: str) -> list[servers.Target]:
    """Every instance and cluster (its primary) of the tenant, of every tenant for '*'."""
    return [
        servers.Target(s) for s in servers.all_servers(ports, None if tenant == auth.PLATFORM else tenant)
    ]


def attestation_outcome(ports: Ports, control: Control, framework: str, tenant: str) -> Outcome:
    """An attested control: COMPLIANT only while evidence a compliance officer accepted is
    valid; NOT_APPLICABLE (evidence needed) otherwise."""
    at = now()
    valid = int(control.rule.get("valid_days") or 365)
    accepted = task_records.accepted_attestation(
        ports, tenant, framework, control.id, at - timedelta(days=valid)
    )
    if accepted is None:
        return Outcome(control.id, PLATFORM, tenant, NOT_APPLICABLE,
                       ["no automated check can judge this: it needs evidence uploaded to its remediation task "
                        "and accepted by a compliance officer"],
                       {"source": "attestation", "at": iso(at), "accepted": None})  # fmt: skip
    return Outcome(control.id, PLATFORM, tenant, PASS, [],
                   {"source": "attestation", "at": iso(at), "accepted": accepted, "valid_days": valid})  # fmt: skip


def evaluate(ports: Ports, framework: str, tenant: str, controls: list[Control],
             targets: list[servers.Target] | None = None) -> list[Outcome]:  # fmt: skip
    """Every control of `controls` on every server of the scope (or `targets`), and the
    platform controls once."""
    frame = catalog.load().frameworks[framework]
    found = scope_targets(ports, tenant) if targets is None else targets
    out: list[Outcome] = []
    for target in found:
        out += checks.evaluate_server(ports, target, controls)
        for control in (c for c in controls if c.kind == "fact" and c.scope == "server"):
            try:
                out.append(facts.server_fact(ports, control, target))
            except Exception as exc:  # one fact that cannot be read is that fact's ERROR
                out.append(Outcome(control.id, target.target_id, target.tenant_id, ERROR,
                                   [f"cannot be read: {getattr(exc, 'message', None) or exc}"],
                                   {"source": "fact", "fact": control.fact, "target_id": target.target_id,
                                    "at": iso(now())}))  # fmt: skip
    for control in (c for c in controls if c.scope == PLATFORM):
        if control.kind == "attested":
            out.append(attestation_outcome(ports, control, framework, tenant))
        else:
            out.append(facts.platform_fact(ports, control, frame, tenant))
    return out


def summarize(catalog_: Catalog, framework: str, outcomes: list[Outcome], targets: int) -> dict[str, Any]:
    """Results per control (seed shape) and the summary, from the outcomes."""
    by_control: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_control.setdefault(o.control_id, []).append(o)
    results: list[dict[str, Any]] = []
    for control_id, found in by_control.items():
        control = catalog_.control(control_id)
        counts = {s: sum(1 for o in found if o.status == s) for s in (PASS, FAIL, ERROR, NOT_APPLICABLE)}
        judged = counts[PASS] + counts[FAIL] + counts[ERROR]
        if not judged:
            result, score = "NOT_APPLICABLE", None
        else:
            score = round(100.0 * counts[PASS] / judged, 1)
            result = "NON_COMPLIANT" if counts[FAIL] else ("WARNING" if counts[ERROR] else "COMPLIANT")
        findings = [f"{o.scope}: {f}" for o in found if o.status != PASS for f in o.findings]
        if len(findings) > MAX_FINDINGS:
            findings = findings[:MAX_FINDINGS] + [
                f"... and {len(findings) - MAX_FINDINGS} more (see evidence_details)"
            ]
        refs = list(control.requirement_ids(framework))
        failing = result in ("NON_COMPLIANT",) or (control.kind == "attested" and result == "NOT_APPLICABLE")
        results.append({
            "control_id": control.id, "control_reference": refs[0], "requirement_ids": refs,
            "control_name": control.title, "kind": control.kind, "severity": control.severity,
            "assessment_result": result, "score": score, "findings": findings,
            "evidence": _evidence_line(control, found), "evidence_details": [o.to_record() for o in found],
            "scopes": {"passed": counts[PASS], "failed": counts[FAIL], "not_assessed": counts[ERROR],
                       "not_applicable": counts[NOT_APPLICABLE]},
            "remediation_required": failing, "remediation": control.remediation if failing else None,
            "remediation_priority": PRIORITY[control.severity] if failing else None,
        })  # fmt: skip
    scored = [r["score"] for r in results if r["score"] is not None]
    fails = [(r, o) for r in results for o in r["evidence_details"] if o["status"] == FAIL]
    summary = {
        "total_controls": len(results), "servers": targets,
        "compliant": sum(1 for r in results if r["assessment_result"] == "COMPLIANT"),
        "non_compliant": sum(1 for r in results if r["assessment_result"] == "NON_COMPLIANT"),
        "warnings": sum(1 for r in results if r["assessment_result"] == "WARNING"),
        "not_applicable": sum(1 for r in results if r["assessment_result"] == "NOT_APPLICABLE"),
        "critical_findings": sum(1 for r, _ in fails if r["severity"] == "CRITICAL"),
        "high_risk_findings": sum(1 for r, _ in fails if r["severity"] == "HIGH"),
    }  # fmt: skip
    return {"results": results, "summary": summary,
            "overall_score": round(statistics.fmean(scored), 1) if scored else None}  # fmt: skip


def _evidence_line(control: Control, found: list[Outcome]) -> str:
    """What was looked at, where and when, in one sentence (the seed's `evidence` string)."""
    if not found:
        return ""
    first = found[0].evidence
    when = first.get("at")
    where = sorted({o.scope for o in found})
    if control.kind == "sql":
        dbs = " in every database" if control.per_database else ""
        return f"{control.query} queried{dbs} on {', '.join(where)} at {when}: {control.sql_text}"
    if control.kind == "fact":
        return f"fact {control.fact} read for {', '.join(where)} at {when}"
    accepted = first.get("accepted")
    if accepted:
        return f"attested evidence accepted by {accepted.get('accepted_by')} at {accepted.get('accepted_at')}"
    return f"no attested evidence accepted (checked at {when})"


def fit(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The results as a metadata record may hold them: rows of the evidence cut when the
    whole is over RECORD_BUDGET (the object store keeps them all)."""
    if len(json.dumps(results, default=str)) <= RECORD_BUDGET:
        return results, False
    cut = []
    for r in results:
        details = [{**o, "evidence": {**o["evidence"], "rows": o["evidence"].get("rows", [])[:2]}}
                   for o in r["evidence_details"]]  # fmt: skip
        cut.append({**r, "evidence_details": details})
    return cut, True
