"""HA clusters (Patroni): what a user asks for and what exists."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from pgfleet.core.models import Credentials, Endpoint, PoolerEndpoint, StrictModel
from pgfleet.domains.instances import (
    BackupStatus,
    BackupStatusField,
    BackupStatusReason,
    FirstBackupId,
    InstanceCreate,
    InstanceStats,
    InstanceStatus,
    LogEntry,
)

ReplicationMode = Literal["async", "sync", "sync_strict"]
NodeCount = Field(default=3, ge=1, le=9, description="Number of nodes: one primary and N-1 replicas.")


class ClusterCreate(InstanceCreate):
    node_count: int = NodeCount
    replication_mode: ReplicationMode = Field(
        default="async",
        description=(
            "async: commits return without waiting for replicas; sync: a commit waits for one replica "
            "while one is healthy; sync_strict: a commit never returns without a replica's confirmation."
        ),
    )

    @model_validator(mode="after")
    def _strict_needs_a_replica(self) -> ClusterCreate:
        if self.replication_mode == "sync_strict" and self.node_count < 2:
            raise ValueError("sync_strict needs node_count >= 2: a commit waits for a replica")
        return self


class ClusterNode(BaseModel):
    id: str
    name: str
    role: Literal["primary", "replica", "unknown"]
    state: str = Field(description="Patroni's state of the node: running, streaming, stopped, ...")
    endpoint: Endpoint
    timeline: int | None = None
    lag_bytes: int | None = None


class Cluster(BaseModel):
    id: str
    name: str
    tenant_id: str
    status: InstanceStatus | Literal["scaling", "promoting"]
    status_reason: str = ""
    engine: str = Field(
        default="local",
        description="The engine that serves it: local (PostgreSQL, Patroni and pgBackRest on the control plane's hosts).",
    )
    version: str
    node_count: int
    replication_mode: ReplicationMode
    primary: str | None = Field(default=None, description="Node id of the current primary.")
    nodes: list[ClusterNode]
    cpu: int
    memory: int
    storage: int
    database: str
    username: str
    created_at: str
    updated_at: str
    operation_id: str | None = None
    pooler: PoolerEndpoint | None = Field(
        default=None, description="PgBouncer in front of its primary, when configured."
    )
    first_backup_id: str | None = FirstBackupId
    backup_status: BackupStatus | None = BackupStatusField
    backup_status_reason: str = BackupStatusReason


class ClusterCredentials(Credentials):
    read_only_uri: str = Field(description="Multi-host URI preferring replicas, for reads.")


class ClusterCreated(Cluster):
    credentials: ClusterCredentials


class ClusterList(BaseModel):
    clusters: list[Cluster]
    next_token: str | None = None


class ClusterScale(StrictModel):
    node_count: int = Field(ge=1, le=9, description="The number of nodes wanted.")


class ClusterPromote(StrictModel):
    node_id: str = Field(pattern=r"^n[1-9][0-9]?$", description="The replica to make primary.")


class ReplicaReplication(BaseModel):
    node_name: str
    lag_bytes: int
    lag_seconds: float
    state: str
    is_healthy: bool


class ReplicationStatus(BaseModel):
    primary: str | None
    replicas: list[ReplicaReplication]


class NodeStats(InstanceStats):
    node_id: str
    role: str


class ClusterStats(BaseModel):
    cluster: InstanceStats = Field(description="Sums over the nodes (database size from the primary).")
    nodes: list[NodeStats]


class ClusterLogEntry(LogEntry):
    node: str


class ClusterLogs(BaseModel):
    lines: list[ClusterLogEntry]
