"""security: vulnerabilities (CVEs of the installed PostgreSQL, extensions, PgBouncer,
pgBackRest and Patroni, from a dataset shipped in the repository), security incidents, and
threats detected every minute from the servers' logs and catalogs and the API's audit trail,
with their mitigations, `/api/v1/security` (seed 003, phase 6)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.security import (
    incident_routes,
    threat_mitigations,
    threat_routes,
    threat_scan,
    vulnerability_routes,
)
from pgfleet.domains.security.cves import import_file as import_cve_dataset

DOMAIN = Domain(
    name="security",
    mounts=(
        Mount(vulnerability_routes.router, "/api/v1/security"),
        Mount(incident_routes.router, "/api/v1/security"),
        Mount(threat_routes.router, "/api/v1/security"),
    ),
    tasks={
        threat_scan.DETECT_TASK: threat_scan.scheduled_detection,
        threat_mitigations.LIFT_TASK: threat_mitigations.scheduled_lift,  # one mitigation's at()
    },
    schedules=(threat_scan.DETECT_SCHEDULE,),  # detection, every minute
)

__all__ = ["DOMAIN", "import_cve_dataset"]
