"""Wire shapes of `/api/v1/compliance` (snake_case, as seed 003 writes the compliance group)
and of `GET /api/v1/system/compliance/report` (camelCase: the seed's ComplianceReportResponse)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from pgfleet.core.models import StrictModel
from pgfleet.core.wire import CamelModel

Framework = Literal["HIPAA", "GDPR", "SOX", "PCI_DSS", "SOC2"]
AssessmentType = Literal["FULL", "PARTIAL", "TARGETED"]
Result = Literal["COMPLIANT", "NON_COMPLIANT", "WARNING", "NOT_APPLICABLE"]
Priority = Literal["LOW", "MEDIUM", "HIGH", "URGENT"]
TaskStatus = Literal["OPEN", "IN_PROGRESS", "ON_HOLD", "COMPLETED", "CANCELLED"]
ReportType = Literal["PERIODIC", "AD_HOC", "INCIDENT", "AUDIT"]
ASSESSMENT_ID_PATTERN = r"^cas-[0-9a-f]{12}$"
TASK_ID_PATTERN = r"^crt-[0-9a-f]{12}$"
Text = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
Tenant = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class FrameworkStatus(BaseModel):
    framework_name: Framework
    description: str
    requirements_source: str = Field(description="Where the framework's requirement ids come from")
    compliance_score: float | None = Field(description="Of the last completed assessment; null before one")
    status: Literal["COMPLIANT", "PARTIALLY_COMPLIANT", "NON_COMPLIANT", "NOT_ASSESSED"]
    last_assessment: str | None
    last_assessment_id: str | None
    last_assessment_type: AssessmentType | None
    next_assessment_due: str | None = Field(
        description="The monthly schedule's next run after the last assessment"
    )
    total_controls: int
    compliant_controls: int | None
    non_compliant_controls: int | None
    controls_with_warnings: int | None
    not_applicable_controls: int | None
    critical_findings: int | None
    high_risk_findings: int | None
    certification_status: str | None = Field(
        description="null: pgfleet records no certification (an auditor certifies)"
    )
    certification_expiry: str | None


class FrameworksResponse(BaseModel):
    frameworks: list[FrameworkStatus]
    overall_compliance_score: float | None
    tenant_id: str = Field(description='The scope: a tenant, or "*" (every tenant, a platform token)')


class RunAssessmentRequest(StrictModel):
    framework: Framework
    assessment_type: AssessmentType = "FULL"
    tenant_id: Tenant | None = None
    specific_controls: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=50,
        description="Requirement ids of the framework (164.312(a)(1) selects its sub-requirements too) or control ids",
    )


class RunAssessmentResponse(BaseModel):
    assessment_id: str
    framework: Framework
    status: Literal["INITIATED"]
    estimated_completion: str | None = Field(
        description="From the median duration of earlier ones; null before one"
    )
    controls_to_assess: int
    control_ids: list[str]
    operation_id: str
    tenant_id: str


class Evidence(BaseModel):
    control_id: str
    scope: str = Field(description='A server (pgi-/pgc-...) or "platform"')
    tenant_id: str
    status: Literal["PASS", "FAIL", "NOT_APPLICABLE", "ERROR"]
    findings: list[str]
    evidence: dict[str, Any] = Field(
        description="source, query or fact, target_id, databases, at, rows / observed"
    )


class ControlResult(BaseModel):
    control_id: str
    control_reference: str
    requirement_ids: list[str]
    control_name: str
    kind: Literal["sql", "fact", "attested"]
    severity: Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    assessment_result: Result
    score: float | None
    findings: list[str]
    evidence: str
    evidence_details: list[Evidence]
    scopes: dict[str, int]
    remediation_required: bool
    remediation: str | None = None
    remediation_priority: Priority | None = None
    remediation_deadline: str | None = None
    remediation_task_ids: list[str] = Field(default_factory=list)


class AssessmentSummary(BaseModel):
    total_controls: int
    servers: int
    compliant: int
    non_compliant: int
    warnings: int
    not_applicable: int
    critical_findings: int
    high_risk_findings: int


class AssessmentResponse(BaseModel):
    assessment_id: str
    framework: Framework
    assessment_type: AssessmentType
    tenant_id: str
    status: Literal["INITIATED", "RUNNING", "COMPLETED", "FAILED"]
    created_at: str
    completion_timestamp: str | None
    overall_score: float | None
    results: list[ControlResult]
    summary: AssessmentSummary | None
    servers: list[str] = Field(default_factory=list)
    evidence_cut: bool = Field(
        default=False, description="Rows cut to fit the record: the evidence package has all"
    )
    operation_id: str | None
    error: str | None = None


class ReportView(BaseModel):
    report_id: str
    report_name: str
    framework: Framework
    report_type: ReportType
    reporting_period: str
    generation_timestamp: str
    overall_compliance_score: float | None
    status: Literal["PUBLISHED"]
    tenant_id: str
    assessment_id: str
    file_location: str = Field(description="The PDF: a presigned link, valid one hour")
    json_location: str = Field(description="The same report as JSON: a presigned link, valid one hour")
    executive_summary: str
    next_report_due: str | None


class ReportsResponse(BaseModel):
    reports: list[ReportView]
    total_count: int


class CreateReportRequest(StrictModel):
    framework: Framework
    report_type: Literal["AD_HOC"] = Field(
        default="AD_HOC", description="PERIODIC reports come from the monthly schedule"
    )
    tenant_id: Tenant | None = None
    assessment_id: Annotated[str, StringConstraints(pattern=ASSESSMENT_ID_PATTERN)] | None = None
    date_from: str | None = Field(default=None, max_length=40)
    date_to: str | None = Field(default=None, max_length=40)


class Milestoned(BaseModel):
    progress_percentage: int
    next_milestone: str | None


class TaskEvidence(BaseModel):
    kind: Literal["text", "file"]
    text: str | None = None
    filename: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    by: str
    at: str


class RemediationTask(Milestoned):
    task_id: str
    title: str
    description: str
    compliance_framework: Framework
    control_reference: str
    control_id: str
    requirement_ids: list[str]
    target_id: str | None
    tenant_id: str
    priority: Priority
    severity: str
    status: TaskStatus
    assigned_to: str | None
    due_date: str
    overdue: bool
    estimated_effort_hours: float | None
    actual_effort_hours: float | None
    task_type: str
    dependencies: list[str]
    verification_criteria: list[str]
    verification_status: Literal["PENDING", "VERIFIED", "REJECTED"] | None
    findings: list[str]
    assessment_id: str | None
    created_at: str
    updated_at: str
    completed_at: str | None
    progress_notes: list[dict[str, Any]]
    evidence: list[TaskEvidence]
    verifications: list[dict[str, Any]]


class TaskSummary(BaseModel):
    total_tasks: int
    open: int
    in_progress: int
    on_hold: int
    overdue: int
    completed_this_month: int


class TasksResponse(BaseModel):
    tasks: list[RemediationTask]
    summary: TaskSummary


class EvidenceFile(StrictModel):
    filename: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    content_type: Annotated[str, StringConstraints(min_length=3, max_length=100)] = "application/octet-stream"
    content_base64: Annotated[str, StringConstraints(min_length=4, max_length=7_000_000)]


class UpdateTaskRequest(StrictModel):
    status: Literal["IN_PROGRESS", "COMPLETED", "ON_HOLD"] | None = Field(
        default=None, description="COMPLETED verifies, as verification_status VERIFIED does"
    )
    progress_notes: Text | None = None
    actual_effort_hours: float | None = Field(default=None, ge=0, le=10_000)
    completion_evidence: Text | None = Field(default=None, description="Attested evidence, as text")
    evidence_file: EvidenceFile | None = Field(
        default=None, description="Attested evidence, as a file (base64)"
    )
    verification_status: Literal["PENDING", "VERIFIED", "REJECTED"] | None = Field(
        default=None,
        description="VERIFIED re-runs the control now (it must pass) or, for an attested control, accepts the "
        "evidence (a compliance officer only); REJECTED refuses the evidence",
    )
    assigned_to: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    updated_by: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="Ignored: the token's subject is recorded"
    )


class UpdateTaskResponse(RemediationTask):
    pass


# --- GET /api/v1/system/compliance/report (camelCase) ---------------------------------------------------


class ComplianceRequirement(CamelModel):
    requirement_id: str
    description: str
    status: Literal["COMPLIANT", "NON_COMPLIANT", "PARTIAL", "NOT_APPLICABLE"]
    score: float | None
    evidence: list[str]
    last_assessed: str
    controls: list[str]


class ComplianceFinding(CamelModel):
    requirement_ids: list[str]
    control_id: str
    scope: str
    target_id: str | None
    severity: str
    status: Literal["FAIL", "ERROR", "NOT_APPLICABLE"]
    finding: str
    remediation_task_id: str | None


class TimeWindow(CamelModel):
    start: str
    end: str


class ComplianceReportResponse(CamelModel):
    framework: Framework
    overall_score: float | None = Field(description="0-100, of the assessment; null when nothing was judged")
    requirements: list[ComplianceRequirement]
    findings: list[ComplianceFinding]
    recommendations: list[str]
    evidence_package: str | None = Field(
        description="With includeEvidence: a presigned link to a zip of the evidence"
    )
    assessment_id: str
    assessed_at: str
    tenant_id: str
    time_range: TimeWindow
