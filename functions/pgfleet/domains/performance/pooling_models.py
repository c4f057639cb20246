"""Wire shapes of `POST /api/v1/performance/connections/configure` (seed 003, phase 3:
ConnectionConfigureRequest), camelCase on the wire. The seed's fields come first; `targetId`
names the server (the scope rule of seed 003, one target only), `enabled` turns a pooler off."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pgfleet.core.wire import CamelModel, StrictCamelModel

PoolMode = Literal["session", "transaction", "statement"]


class PoolerConfiguration(StrictCamelModel):
    pool_mode: PoolMode = Field(
        default="transaction",
        description="PgBouncer's pool_mode: a server connection per client (session), per transaction, "
        "or per statement.",
    )
    max_client_connections: int = Field(
        default=100, ge=1, le=10000, description="Clients the pooler accepts at once (max_client_conn)."
    )
    default_pool_size: int = Field(
        default=20, ge=1, le=10000,
        description="Server connections per user and database (default_pool_size); at most "
        "maxClientConnections, and with reservePoolSize it must fit in the server's max_connections.",
    )  # fmt: skip
    reserve_pool_size: int = Field(
        default=0, ge=0, le=1000, description="Extra server connections for clients that waited 5 s."
    )
    enabled: bool = Field(default=True, description="false stops and removes the pooler.")

    @model_validator(mode="after")
    def _pool_fits_clients(self) -> PoolerConfiguration:
        if self.default_pool_size > self.max_client_connections:
            raise ValueError(
                f"defaultPoolSize {self.default_pool_size} is over maxClientConnections "
                f"{self.max_client_connections}: a pool larger than its clients is never used"
            )
        return self


class ConnectionConfigureRequest(StrictCamelModel):
    target_id: str = Field(
        pattern=r"^pg[ic]-[0-9a-f]{12}$", description="An instance (pgi-...) or a cluster (pgc-...)."
    )
    max_connections: int | None = Field(
        default=None, ge=1, le=100000,
        description="max_connections of the server: at least 10 + superuser_reserved_connections (3) and "
        "at most one per 10 MB of the server's memory; applied with a planned restart (rolling on a cluster).",
    )  # fmt: skip
    pooler_configuration: PoolerConfiguration | None = None

    @model_validator(mode="after")
    def _something_to_do(self) -> ConnectionConfigureRequest:
        if self.max_connections is None and self.pooler_configuration is None:
            raise ValueError("give maxConnections, poolerConfiguration, or both")
        return self


class PoolerEndpoint(CamelModel):
    host: str
    port: int
    pool_mode: PoolMode
    status: Literal["starting", "running", "stopped", "failed", "removing"]
    status_reason: str = ""
    database: str | None = None
    default_pool_size: int | None = None
    max_client_connections: int | None = None
    reserve_pool_size: int | None = None


class PoolerCredentials(CamelModel):
    username: str
    pooler_uri: str = Field(
        description="Shown once: the application role's URI through the pooler (its password stays in Secrets "
        "Manager)."
    )


class ConnectionConfigureResponse(CamelModel):
    target_id: str
    operation_id: str = Field(description="GET /api/v1/operations/{id} shows its steps and why.")
    status: Literal["QUEUED"] = "QUEUED"
    max_connections: int | None = Field(default=None, description="What max_connections becomes.")
    restart_required: bool = Field(description="A new max_connections restarts the server (planned).")
    pooler: PoolerEndpoint | None = Field(
        default=None, description="The pooler as it will be; null when removed."
    )
    credentials: PoolerCredentials | None = Field(
        default=None, description="Shown once, when a pooler is on."
    )
