"""system: the audit trail (`/api/v1/system/audit`). Audit events themselves are written by
the api handler and the operation engine (pgfleet.core.audit)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.system import routes

DOMAIN = Domain(name="system", mounts=(Mount(routes.router, "/api/v1/system"),))

__all__ = ["DOMAIN"]
