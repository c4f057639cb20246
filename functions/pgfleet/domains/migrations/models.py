"""Migrations of a single instance into a Patroni cluster: the request and its record."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from pgfleet.core.models import StrictModel
from pgfleet.domains import clusters

Phase = Literal["building", "catching_up", "ready", "cutting_over", "completed", "failed"]


class MigrationCreate(StrictModel):
    source_id: str = Field(description="The single instance (pgi-...) to migrate.")
    target_type: Literal["cluster"] = Field(description="What to migrate to: an HA cluster.")
    node_count: int = clusters.NodeCount
    cutover_mode: Literal["manual", "automatic"] = Field(
        default="manual",
        description="automatic: cut over as soon as the cluster has caught up; manual: wait for "
        "POST /api/v1/postgres/migrate/{migration_id}/cutover.",
    )

    @field_validator("source_id")
    @classmethod
    def _single_instance(cls, value: str) -> str:
        if value.startswith("pgc-"):
            raise ValueError(
                f"{value} is a cluster already; only a single instance (pgi-...) can be migrated"
            )
        if not value.startswith("pgi-") or len(value) != 16:
            raise ValueError(f"{value!r} is not a single instance id (pgi- and 12 hex digits)")
        return value


class MigrationStep(BaseModel):
    operation_id: str
    name: str
    status: str
    reason: str | None = None


class NotMoved(BaseModel):
    what: str
    reason: str


class Moved(BaseModel):
    what: str
    how: str


class MigrationTarget(BaseModel):
    uri: str = Field(description="The cluster's read-write multi-host URI (without the password).")
    read_only_uri: str = Field(description="The cluster's URI preferring replicas (without the password).")


class Migration(BaseModel):
    id: str
    tenant_id: str
    source_id: str
    target_type: Literal["cluster"]
    cluster_id: str | None
    node_count: int
    cutover_mode: Literal["manual", "automatic"]
    phase: Phase
    phase_reason: str = ""
    lag_bytes: int | None = Field(
        default=None, description="WAL bytes the cluster has not replayed yet (live while it follows)."
    )
    steps: list[MigrationStep]
    operation_id: str | None = Field(default=None, description="The operation building the cluster.")
    cutover_operation_id: str | None = None
    writes_refused_at: str | None = Field(default=None, description="When the source stopped taking writes.")
    completed_at: str | None = None
    target: MigrationTarget | None = Field(default=None, description="Where to connect once completed.")
    old_endpoint: str = Field(
        description="What the source's host:port does: it serves the application until the cutover; after "
        "it, the source is stopped (its data kept until you delete it) and the same host:port forwards to the "
        "cluster's current primary, following switchovers and failovers."
    )
    moved: list[Moved] = Field(
        default_factory=list, description="What moves with the data to the cluster at the cutover, and how."
    )
    not_moved: list[NotMoved] = Field(description="What does not move, and why.")
    created_at: str
    updated_at: str


class MigrationCreated(Migration):
    credentials: clusters.ClusterCredentials = Field(
        description="The cluster's credentials: the source's role and password, moved with the data."
    )
