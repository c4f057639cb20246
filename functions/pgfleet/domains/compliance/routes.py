"""/api/v1/compliance (seed 003, phase 6): frameworks and their scores, assessments (202: run
by the worker), reports (PDF and JSON behind presigned links; PERIODIC from the monthly
schedule, AD_HOC on request) and remediation tasks. Reads need `compliance:read`; running an
assessment, writing a report and updating a task `compliance:assess`. Scope: `tenant_id`
(a platform token may name any, or none for every tenant); a tenant's token sees its own
servers' results only. snake_case on the wire, as the seed writes this group."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core import auth
from pgfleet.core.domain import requires
from pgfleet.core.errors import ValidationFailed
from pgfleet.core.routing import ports, principal
from pgfleet.domains.compliance import assessments, remediation, reports, status
from pgfleet.domains.compliance.models import (
    ASSESSMENT_ID_PATTERN,
    TASK_ID_PATTERN,
    AssessmentResponse,
    CreateReportRequest,
    Framework,
    FrameworksResponse,
    Priority,
    ReportsResponse,
    ReportType,
    ReportView,
    RunAssessmentRequest,
    RunAssessmentResponse,
    TasksResponse,
    TaskStatus,
    UpdateTaskRequest,
    UpdateTaskResponse,
)

router = Router()
TenantQuery = Annotated[str | None, Query(max_length=128)]
DateQuery = Annotated[str | None, Query(max_length=40, description="An ISO 8601 date or date-time (UTC)")]


def _date(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"{field} {value!r} is not an ISO 8601 date", details={"field": field}
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=assessments.now().tzinfo)


@router.get(
    "/frameworks", summary="Each framework's score, counts and last assessment, from real assessments"
)
@requires("compliance:read")
def get_frameworks(
    framework: Annotated[Framework | None, Query()] = None, tenant_id: TenantQuery = None
) -> FrameworksResponse:
    return FrameworksResponse.model_validate(
        status.frameworks(ports(), principal(router), framework, tenant_id)
    )


@router.post(
    "/assessments/run",
    summary="Assess a framework's controls on the servers in scope (FULL, PARTIAL: what was not compliant, "
    "TARGETED: specific_controls); the worker runs it",
    status_code=202,
)
@requires("compliance:assess")
def run_assessment(body: RunAssessmentRequest) -> RunAssessmentResponse:
    caller = principal(router)
    tenant = auth.tenant_scope(caller, body.tenant_id) or auth.PLATFORM
    record = assessments.start(
        ports(), caller, body.framework, body.assessment_type, tenant, list(body.specific_controls)
    )
    return RunAssessmentResponse.model_validate({
        "assessment_id": record["id"], "framework": record["framework"], "status": "INITIATED",
        "estimated_completion": record["estimated_completion"], "controls_to_assess": len(record["control_ids"]),
        "control_ids": record["control_ids"], "operation_id": record["operation_id"], "tenant_id": tenant,
    })  # fmt: skip


@router.get(
    "/assessments/<assessment_id>", summary="An assessment's results per control, with evidence and findings"
)
@requires("compliance:read")
def get_assessment(
    assessment_id: Annotated[str, Path(pattern=ASSESSMENT_ID_PATTERN, description="`cas-...`")],
) -> AssessmentResponse:
    record = assessments.get(ports(), principal(router), assessment_id)
    return AssessmentResponse.model_validate({**record, "assessment_id": record["id"]})


@router.get("/reports", summary="Compliance reports (PDF and JSON behind presigned links), newest first")
@requires("compliance:read")
def get_reports(
    framework: Annotated[Framework | None, Query()] = None,
    report_type: Annotated[ReportType | None, Query()] = None,
    date_from: DateQuery = None,
    date_to: DateQuery = None,
    tenant_id: TenantQuery = None,
) -> ReportsResponse:
    data = reports.list_reports(ports(), principal(router), framework, report_type, _date(date_from, "date_from"),
                                _date(date_to, "date_to"), tenant_id)  # fmt: skip
    return ReportsResponse.model_validate(data)


@router.post(
    "/reports",
    summary="Write an AD_HOC report (PDF and JSON) from the newest completed assessment",
    status_code=201,
)
@requires("compliance:assess")
def create_report(body: CreateReportRequest) -> ReportView:
    data = reports.create_ad_hoc(ports(), principal(router), body.framework, body.tenant_id,
                                 _date(body.date_from, "date_from"), _date(body.date_to, "date_to"), body.assessment_id)  # fmt: skip
    return ReportView.model_validate(data)


@router.get("/remediation/tasks", summary="Remediation tasks of failed controls, with a summary")
@requires("compliance:read")
def get_tasks(
    status: Annotated[TaskStatus | None, Query()] = None,
    priority: Annotated[Priority | None, Query()] = None,
    assigned_to: Annotated[str | None, Query(max_length=256)] = None,
    due_date_from: DateQuery = None,
    due_date_to: DateQuery = None,
    tenant_id: TenantQuery = None,
) -> TasksResponse:
    data = remediation.list_tasks(
        ports(), principal(router), tenant_id=tenant_id, status=status, priority=priority, assigned_to=assigned_to,
        due_from=_date(due_date_from, "due_date_from"), due_to=_date(due_date_to, "due_date_to"),
    )  # fmt: skip
    return TasksResponse.model_validate(data)


@router.put(
    "/remediation/tasks/<task_id>",
    summary="Update a task: status, notes, attested evidence; VERIFIED re-runs the control (or, attested, a "
    "compliance officer accepts the evidence) and closes it",
)
@requires("compliance:assess")
def update_task(
    task_id: Annotated[str, Path(pattern=TASK_ID_PATTERN, description="`crt-...`")], body: UpdateTaskRequest
) -> UpdateTaskResponse:
    return UpdateTaskResponse.model_validate(remediation.update(ports(), principal(router), task_id, body))
