"""platform: health and version (no authentication). The OpenAPI document and Swagger UI
are served by the api handler, from every domain's routes."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.platform import routes

DOMAIN = Domain(name="platform", mounts=(Mount(routes.router),))

__all__ = ["DOMAIN"]
