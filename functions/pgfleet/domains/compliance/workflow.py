"""The assessment operation (`compliance.assess`), run by the worker:

1. evaluate: every control on every server in scope, outcomes per control x scope with their
   evidence; the full evidence also goes to the object store and the record keeps it cut to
   fit a metadata record;
2. remediate: a failed control opens a remediation task per control x scope (or updates the
   open one); an open task whose control now passes is closed, VERIFIED by this assessment;
   each failing result names its tasks and the earliest deadline;
3. report: when the monthly schedule started it, the PERIODIC report.
"""

from __future__ import annotations

import json
from typing import Any

from pgfleet.core.errors import NotFound
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.domains.compliance import catalog, evaluation, remediation, reports, task_records
from pgfleet.domains.compliance.assessments import ASSESS, KIND, TERMINAL, evidence_key, now
from pgfleet.domains.compliance.checks import iso


def _record(ctx: StepContext) -> dict[str, Any]:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is None:
        raise NotFound(f"assessment {ctx.resource_id} is gone")
    return record


def _evaluate(ctx: StepContext) -> str:
    ports = ctx.ports
    record = _record(ctx)
    started = now()
    ports.store.update(KIND, record["id"], {"status": "RUNNING", "started_at": iso(started)})
    cat = catalog.load()
    controls = [cat.control(c) for c in record["control_ids"]]
    targets = evaluation.scope_targets(ports, record["tenant_id"])
    outcomes = evaluation.evaluate(ports, record["framework"], record["tenant_id"], controls, targets)
    shaped = evaluation.summarize(cat, record["framework"], outcomes, len(targets))
    ports.objects.put(evidence_key(record["id"]),
                      json.dumps({"assessment_id": record["id"], "framework": record["framework"],
                                  "tenant_id": record["tenant_id"], "results": shaped["results"]},
                                 default=str).encode(), "application/json")  # fmt: skip
    kept, cut = evaluation.fit(shaped["results"])
    finished = now()
    ports.store.update(KIND, record["id"], {
        "completion_timestamp": iso(finished), "overall_score": shaped["overall_score"],
        "results": kept, "summary": shaped["summary"], "evidence_cut": cut, "servers": [t.target_id for t in targets],
        "duration_seconds": round((finished - started).total_seconds(), 3),
    })  # fmt: skip
    s = shaped["summary"]
    return (f"{record['framework']}: {s['total_controls']} control(s) on {len(targets)} server(s): {s['compliant']} "
            f"compliant, {s['non_compliant']} non-compliant, {s['warnings']} warning(s), {s['not_applicable']} not "
            f"applicable; score {shaped['overall_score']}")  # fmt: skip


def _remediate(ctx: StepContext) -> str:
    record = _record(ctx)
    opened, updated, closed, still_open = remediation.sync(ctx.ports, record)
    results = []
    for result in record.get("results") or []:  # each failing control names its tasks and deadline
        keys = [task_records.task_key(o["tenant_id"], record["framework"], result["control_id"], o["scope"])
                for o in result["evidence_details"]]  # fmt: skip
        found = [still_open[k] for k in keys if k in still_open]
        results.append({**result, "remediation_task_ids": [t["id"] for t in found],
                        "remediation_deadline": min((t["due_date"] for t in found), default=None)})  # fmt: skip
    # COMPLETED once its tasks are there: whoever reads the results finds their tasks
    ctx.ports.store.update(KIND, record["id"], {"results": results, "status": "COMPLETED"})
    return f"remediation tasks: {opened} opened, {updated} updated, {closed} closed (their control passes)"


def _report(ctx: StepContext) -> str:
    record = _record(ctx)
    if not record.get("report"):
        return "no report asked for"
    report = reports.generate(ctx.ports, record, record["report"], created_by="schedule")
    return f"report {report['id']} ({report['report_type']}) stored"


def _failed(ctx: StepContext, error: str) -> None:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is not None and record["status"] not in TERMINAL:
        ctx.ports.store.update(KIND, record["id"], {"status": "FAILED", "error": error,
                                                    "completion_timestamp": utcnow_iso()})  # fmt: skip


WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        ASSESS, (("evaluate", _evaluate), ("remediate", _remediate), ("report", _report)), on_failure=_failed
    ),
)
