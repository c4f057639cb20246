"""compliance: controls as data (a catalog of SQL checks and platform facts with pass rules,
mapped to HIPAA, GDPR Art. 32, PCI DSS v4.0, SOC 2 and SOX ITGC requirement ids),
assessments run as operations with evidence per control and server, remediation tasks that
only a passing re-run or accepted attested evidence closes, and reports (PDF and JSON in the
object store; monthly and ad hoc), `/api/v1/compliance` (seed 003, phase 6)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.compliance import reports, routes, status, workflow
from pgfleet.domains.compliance.models import ComplianceReportResponse, Framework

DOMAIN = Domain(
    name="compliance",
    mounts=(Mount(routes.router, "/api/v1/compliance"),),
    workflows=workflow.WORKFLOWS,  # compliance.assess: evaluate, remediate, report
    tasks={reports.MONTHLY_TASK: reports.scheduled_monthly},
    schedules=(reports.MONTHLY_SCHEDULE,),  # PERIODIC reports, 02:00 UTC on the 1st
)

# GET /api/v1/system/compliance/report (the system domain's route, the seed's camelCase shape)
system_report = status.system_report

__all__ = ["DOMAIN", "ComplianceReportResponse", "Framework", "system_report"]
