"""security: vulnerabilities (CVEs of the installed PostgreSQL, extensions, PgBouncer,
pgBackRest and Patroni, from a dataset shipped in the repository) and security incidents,
`/api/v1/security` (seed 003, phase 6)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.security import incident_routes, vulnerability_routes
from pgfleet.domains.security.cves import import_file as import_cve_dataset

DOMAIN = Domain(
    name="security",
    mounts=(
        Mount(vulnerability_routes.router, "/api/v1/security"),
        Mount(incident_routes.router, "/api/v1/security"),
    ),
)

__all__ = ["DOMAIN", "import_cve_dataset"]
