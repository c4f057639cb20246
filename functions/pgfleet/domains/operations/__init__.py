"""operations: `GET /api/v1/operations/{id}`, the status and steps of long work. The
operation engine itself is shared machinery (`pgfleet.core.operations`)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.operations import routes

DOMAIN = Domain(name="operations", mounts=(Mount(routes.router, "/api/v1/operations"),))

__all__ = ["DOMAIN"]
