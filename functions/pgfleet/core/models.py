"""Shapes shared by every resource."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

RESOURCE_NAME_PATTERN = r"^[a-z][a-z0-9-]{2,62}$"
SQL_IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
RESERVED_ROLE_NAMES = frozenset({"postgres", "replicator", "rewind_user", "pgbackrest", "public"})

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


class Credentials(BaseModel):
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
