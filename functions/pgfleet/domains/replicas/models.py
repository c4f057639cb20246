"""Read replicas of a single instance: streaming standbys, each with its own read-only endpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from pgfleet.core.models import Endpoint, StrictModel
from pgfleet.domains.instances import Cpu, Memory

MAX_REPLICAS = 5

ReplicaStatus = Literal["creating", "running", "deleting", "failed"]


class ReplicaCreate(StrictModel):
    replica_count: int = Field(default=1, ge=1, le=MAX_REPLICAS, description="How many replicas to add.")
    cpu: int = Cpu
    memory: int = Memory


class Replica(BaseModel):
    id: str
    instance_id: str = Field(description="The instance this replica streams from.")
    name: str
    tenant_id: str
    status: ReplicaStatus
    status_reason: str = Field(default="", description="Why the replica is in this status.")
    cpu: int
    memory: int
    endpoint: Endpoint = Field(description="Read-only endpoint; the instance's credentials work here.")
    created_at: str
    updated_at: str
    operation_id: str | None = Field(default=None, description="The last operation on this replica.")
    state: str | None = Field(
        default=None,
        description="Replication state seen by the instance (streaming, catchup, disconnected);"
        " only in listings, null when not observed.",
    )
    lag_bytes: int | None = Field(default=None, description="WAL bytes not yet replayed by the replica.")
    lag_seconds: float | None = Field(default=None, description="Replay lag in seconds.")


class ReplicaList(BaseModel):
    replicas: list[Replica]


class ReplicasCreated(ReplicaList):
    operation_ids: list[str] = Field(description="One operation per replica, in the order of `replicas`.")
