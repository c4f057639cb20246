"""servers: the one server behind an instance or a cluster (its primary, or a named node),
resolved for the domains that run SQL inside it or size it. No routes of its own."""

from pgfleet.core.domain import Domain
from pgfleet.domains.servers import log_cursor
from pgfleet.domains.servers.service import (
    MB,
    Server,
    Target,
    admin,
    all_servers,
    connection_uri,
    get,
    get_visible,
    kind_of,
    targets,
    tls_credentials,
)

DOMAIN = Domain(name="servers")

__all__ = [
    "DOMAIN", "MB", "Server", "Target", "admin", "all_servers", "connection_uri", "get", "get_visible", "kind_of",
    "log_cursor", "targets", "tls_credentials",
]  # fmt: skip
