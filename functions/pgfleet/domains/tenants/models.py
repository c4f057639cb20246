"""Tenants inside an instance or a cluster: a database (or a schema) per tenant, with quotas."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from pgfleet.core.models import (
    RESERVED_DATABASE_NAMES,
    SqlIdentifier,
    StrictModel,
    TlsCredentials,
    reserved_role,
)

# Lowercase words joined by single '-' or '_': safe in a path, and "tenant-abc" becomes the
# database, schema and role stem "tenant_abc". 40 characters leave room for role suffixes.
TENANT_ID_PATTERN = r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$"
RESERVED_STEMS = RESERVED_DATABASE_NAMES | {"public", "information_schema"}
# Roles pgfleet creates for tenants start with this; a user may not pick such a name.
INTERNAL_ROLE_PREFIX = "pgfleet_"

TenantMode = Literal["database_per_tenant", "schema_per_tenant"]
TenantId = Annotated[
    str,
    Field(
        pattern=TENANT_ID_PATTERN,
        min_length=2,
        max_length=40,
        description="Tenant id, unique per instance or cluster: lowercase letters and digits in words "
        "joined by '-' or '_', 2 to 40 characters. Its database (or schema) is named after it, "
        "with '-' replaced by '_'.",
        examples=["tenant-abc"],
    ),
]


def tenant_stem(tenant_id: str) -> str:
    """The SQL name stem of a tenant id: "tenant-abc" -> "tenant_abc"."""
    return tenant_id.replace("-", "_")


class TenantQuota(StrictModel):
    max_storage_mb: int | None = Field(
        default=None,
        ge=1,
        le=64 * 1024 * 1024,
        description="Storage of the tenant's database or schema, in MB. Over it, the tenant's inserts and "
        "updates are refused (reads, DELETE and TRUNCATE keep working) until usage drops under it. "
        "Checked every minute. Absent: unlimited.",
    )
    max_connections: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description="Concurrent sessions of the tenant's user (per node); the next one is refused. Absent: unlimited.",
    )


class TenantCreate(StrictModel):
    tenant_id: TenantId
    mode: TenantMode = Field(
        default="database_per_tenant",
        description="database_per_tenant: a database of its own; schema_per_tenant: a schema in the "
        "instance's database.",
    )
    initial_user: SqlIdentifier | None = Field(
        default=None,
        description="The tenant's login role. Default: <tenant>_user.",
        examples=["tenant_abc_user"],
    )
    initial_password: SecretStr | None = Field(
        default=None,
        min_length=12,
        max_length=128,
        description="Password of the initial user. Generated when absent; shown once in the response.",
    )
    quota: TenantQuota = Field(default_factory=TenantQuota)

    @field_validator("tenant_id")
    @classmethod
    def _not_reserved_stem(cls, value: str) -> str:
        stem = tenant_stem(value)
        if stem in RESERVED_STEMS or stem.startswith("pg_") or stem.startswith(INTERNAL_ROLE_PREFIX):
            raise ValueError(f"'{value}' is reserved")
        return value

    @field_validator("initial_user")
    @classmethod
    def _not_a_platform_role(cls, value: str | None) -> str | None:
        if value is not None and reserved_role(value):
            raise ValueError(f"'{value}' is reserved: the platform uses it or names its own roles so")
        return value

    @model_validator(mode="after")
    def _default_user_not_a_platform_role(self) -> TenantCreate:
        # "pgfleet" as a tenant id would otherwise log in as "pgfleet_user".
        login = f"{tenant_stem(self.tenant_id)}_user"
        if self.initial_user is None and reserved_role(login):
            raise ValueError(
                f"tenant '{self.tenant_id}' would get the reserved user '{login}': give initial_user"
            )
        return self


class QuotaUsed(BaseModel):
    storage_mb: float = Field(description="Size of the tenant's database or schema, in MB.")
    connections: int = Field(description="Open sessions of the tenant's user.")


class Tenant(BaseModel):
    tenant_id: str
    database_name: str = Field(description="The tenant's database (in schema mode: the shared database).")
    user: str
    created_at: str
    quota_used: QuotaUsed | None = Field(
        default=None, description="Measured live when the server runs, else the last measurement."
    )
    mode: TenantMode
    schema_name: str | None = Field(default=None, description="The tenant's schema (schema_per_tenant only).")
    quota: TenantQuota
    status: Literal["creating", "active", "deleting", "failed"]
    status_reason: str = ""
    writes_suspended: bool = Field(
        default=False, description="True while the tenant (or its server) is over a storage quota."
    )
    operation_id: str | None = None


class TenantCredentials(TlsCredentials):
    username: str
    password: str = Field(description="Shown once, at creation; kept in the secret store.")
    uri: str = Field(description="libpq URI of the tenant's database (read-write endpoint for clusters).")


class TenantCreated(Tenant):
    credentials: TenantCredentials


class TenantList(BaseModel):
    tenants: list[Tenant]
