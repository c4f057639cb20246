"""Shapes shared by every resource."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RESOURCE_NAME_PATTERN = r"^[a-z][a-z0-9-]{2,62}$"
SQL_IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
# Roles the platform itself uses on a server: the superuser, Patroni's replication and
# pg_rewind roles (and their usual names elsewhere), the backup user, Patroni's REST API user,
# and the words PostgreSQL reserves for role specifications. Taking one over would hand its
# privileges to a customer.
RESERVED_ROLE_NAMES = frozenset(
    {
        "postgres", "replicator", "rewinder", "rewind_user", "pgbackrest", "pgfleet",
        "public", "none", "current_user", "current_role", "session_user",
    }
)  # fmt: skip
# Every role pgfleet creates on a server (tenant roles, frozen owners, restore logins) starts
# with this, and PostgreSQL's predefined roles with "pg_".
PLATFORM_ROLE_PREFIXES = ("pgfleet_", "pg_")
# Databases every server has: the maintenance database and the templates.
RESERVED_DATABASE_NAMES = frozenset({"postgres", "template0", "template1"})


def reserved_role(name: str) -> bool:
    """Whether a customer may not create or take over a role of this name."""
    return name in RESERVED_ROLE_NAMES or name.startswith(PLATFORM_ROLE_PREFIXES)


def reserved_database(name: str) -> bool:
    """Whether a customer may not create or take over a database of this name."""
    return name in RESERVED_DATABASE_NAMES


ResourceName = Annotated[
    str,
    Field(
        pattern=RESOURCE_NAME_PATTERN,
        description="Name, unique per tenant: lowercase letters, digits and '-', 3 to 63 characters.",
        examples=["orders-db"],
    ),
]
SqlIdentifier = Annotated[
    str,
    Field(
        pattern=SQL_IDENTIFIER_PATTERN,
        description="A PostgreSQL identifier: lowercase letters, digits and '_', at most 63 characters.",
    ),
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def utcnow_iso() -> str:
    return utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Endpoint(BaseModel):
    host: str = Field(description="Host clients connect to.")
    port: int = Field(description="TCP port of PostgreSQL.")


class PoolerEndpoint(BaseModel):
    """A connection pooler (PgBouncer) in front of the server: POST
    /api/v1/performance/connections/configure turns it on."""

    host: str = Field(description="Host clients connect to.")
    port: int = Field(description="TCP port of the pooler.")
    pool_mode: Literal["session", "transaction", "statement"]
    status: Literal["starting", "running", "stopped", "failed", "removing"]
    status_reason: str = Field(default="", description="Why the pooler is in this status.")


class TlsCredentials(BaseModel):
    """What a client verifies a server with TLS by."""

    verified_uri: str | None = Field(
        default=None,
        description=(
            "The same URI demanding sslmode=verify-full against the platform's CA (sslrootcert): for a server that "
            "runs TLS now; null for one without. It stops working if the server moves to a build without TLS."
        ),
    )
    ca_certificate: str | None = Field(
        default=None, description="The CA (PEM) verified_uri checks the server against; null without TLS."
    )


class Credentials(TlsCredentials):
    username: str
    password: str = Field(description="Shown once, at creation; kept in Secrets Manager.")
    uri: str = Field(description="libpq connection URI.")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None
    request_id: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
