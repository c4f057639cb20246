"""Every Terraform resource and data source of the provider, as declarations.

A new resource is one `ResourceSpec` here: its API path, its create model, the response
fields it exposes, and how each argument changes. A child object puts its parent in the path
(`/api/v1/postgres/single/{instance_id}/replicas`); one that may belong to an instance or to
a cluster has a path for each, and a configuration sets exactly one of the two parent ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr

from pgfleet.core.wire import CamelModel
from pgfleet.domains.archive import BackupScheduleUpdate, BackupScheduleView
from pgfleet.domains.clusters import ClusterCreate, ClusterCreated
from pgfleet.domains.instances import InstanceCreate, InstanceCreated
from pgfleet.domains.notifications import (
    MASK,
    SECRET_CONFIGURATION_FIELDS,
    ChannelName,
    NotificationChannel,
    Routing,
)
from pgfleet.domains.quotas import Quota, QuotaUpdate
from pgfleet.domains.replicas import Replica, ReplicaCreate
from pgfleet.domains.tenants import TenantCreate, TenantCreated
from pgfleet.provider.hcl import Ref
from pgfleet.provider.spec import Computed, DataSourceSpec, InPlaceUpdate, ResourceSpec, Singleton

UpgradeMode = Annotated[
    Literal["in_place", "blue_green"],
    Field(
        description=(
            "How a change of `version` upgrades: `in_place` (pg_upgrade on the same servers, one planned "
            "downtime) or `blue_green` (a new server fed by logical replication, then a cutover of seconds). "
            "Read only when `version` changes; never sent on create."
        ),
    ),
]


PoolerMode = Annotated[
    Literal["session", "transaction", "statement"] | None,
    Field(
        description=(
            "Puts PgBouncer in front of the server with this pool mode (POST "
            "/api/v1/performance/connections/configure, default pool sizes); null: no pooler (an existing one "
            "is removed). Its endpoint is `pooler_host`:`pooler_port`, with the same credentials."
        ),
    ),
]


class InstanceArguments(InstanceCreate):
    upgrade_mode: UpgradeMode = "in_place"
    pooler_mode: PoolerMode = None


class ClusterArguments(ClusterCreate):
    upgrade_mode: UpgradeMode = "in_place"
    pooler_mode: PoolerMode = None


# A change of `version` is an upgrade, planned as an update (never a replace).
UPGRADE = InPlaceUpdate(
    "upgrade",
    ("version",),
    rename={"version": "target_version", "upgrade_mode": "mode"},
    along=("upgrade_mode",),
)
UPGRADE_MODE_ONLY = InPlaceUpdate("", ("upgrade_mode",), method="")


def _pooler_request(planned: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    mode = planned.get("pooler_mode")
    pooler: dict[str, Any] = {"poolMode": mode} if mode else {"enabled": False}
    return "/api/v1/performance/connections/configure", {
        "targetId": planned["id"],
        "poolerConfiguration": pooler,
    }


# `pooler_mode` is applied by the performance domain's configure (also right after a create).
POOLER = InPlaceUpdate(
    "configure connections",
    ("pooler_mode",),
    target=_pooler_request,
    operation_field="operationId",
    on_create=True,
)
POOLER_COMPUTED = (
    Computed("pooler_host", "pooler.host", description="Host of the pooler (null without one)."),
    Computed("pooler_port", "pooler.port", description="TCP port of the pooler (null without one)."),
)

INSTANCE = ResourceSpec(
    name="instance",
    path="/api/v1/postgres/single",
    create=InstanceArguments,
    response=InstanceCreated,
    description=(
        "A single PostgreSQL instance. `cpu`, `memory` and `storage` change in place (resize); a higher "
        "`version` upgrades it in place or blue/green (`upgrade_mode`), keeping its endpoint and data; "
        "changing `name`, `database` or `username` replaces the instance and its data."
    ),
    computed=(
        Computed("status", description="Observed status of the instance."),
        Computed("host", "endpoint.host", stable=True),
        Computed("port", "endpoint.port", stable=True),
        Computed("password", "credentials.password", sensitive=True, create_only=True),
        Computed("uri", "credentials.uri", sensitive=True, create_only=True),
        *POOLER_COMPUTED,
    ),
    in_place=(InPlaceUpdate("resize", ("cpu", "memory", "storage")), UPGRADE, UPGRADE_MODE_ONLY, POOLER),
    force_new=("name", "database", "username"),
    local=("upgrade_mode", "pooler_mode"),
    sources={"pooler_mode": "pooler.pool_mode"},
    example={"name": "orders-db", "memory": 2048},
)

CLUSTER = ResourceSpec(
    name="cluster",
    path="/api/v1/postgres/cluster",
    create=ClusterArguments,
    response=ClusterCreated,
    description=(
        "An HA PostgreSQL cluster (Patroni): a primary and `node_count - 1` streaming replicas. "
        "`cpu`, `memory` and `storage` change in place (a rolling resize: replicas, then a "
        "switchover), `node_count` too (scale); a higher `version` upgrades it (`upgrade_mode`), keeping "
        "its nodes' endpoints and data; changing `name`, `database`, `username` or `replication_mode` "
        "replaces the cluster and its data."
    ),
    computed=(
        Computed("status", description="Observed status of the cluster."),
        Computed("primary"),
        Computed(
            "nodes",
            description="The nodes, as Patroni sees them now.",
            items=(
                Computed("id", description="Node id: `n1`, `n2`, ..."),
                Computed("role"),
                Computed("host", "endpoint.host"),
                Computed("port", "endpoint.port"),
            ),
        ),
        Computed("password", "credentials.password", sensitive=True, create_only=True),
        # Multi-host URIs of the nodes at creation: libpq finds the primary (or a replica) among
        # them, and a later scale does not change them (the API shows them only once).
        Computed("uri", "credentials.uri", sensitive=True, create_only=True),
        Computed("read_only_uri", "credentials.read_only_uri", sensitive=True, create_only=True),
        *POOLER_COMPUTED,
    ),
    in_place=(
        InPlaceUpdate("resize", ("cpu", "memory", "storage")),
        InPlaceUpdate("scale", ("node_count",)),
        UPGRADE,
        UPGRADE_MODE_ONLY,
        POOLER,
    ),
    force_new=("name", "database", "username", "replication_mode"),
    local=("upgrade_mode", "pooler_mode"),
    sources={"pooler_mode": "pooler.pool_mode"},
    example={"name": "orders-ha", "node_count": 3, "memory": 2048},
)

READ_REPLICA = ResourceSpec(
    name="read_replica",
    path="/api/v1/postgres/single/{instance_id}/replicas",
    parents={"instance_id": "Id of the `pgfleet_instance` the replica streams from."},
    create=ReplicaCreate,
    response=Replica,
    description=(
        "A read replica of a single instance: a streaming standby with its own read-only endpoint, "
        "where the instance's credentials work. Changing any argument replaces the replica."
    ),
    # One resource is one replica, however many one request could add.
    fixed={"replica_count": 1},
    created="replicas.0",
    listed="replicas",
    computed=(
        Computed("status", description="Observed status of the replica."),
        Computed("host", "endpoint.host"),
        Computed("port", "endpoint.port"),
    ),
    force_new=("cpu", "memory"),
    example={"instance_id": Ref("pgfleet_instance.example.id")},
)

# Tenants, quotas and backup schedules belong to an instance or to a cluster.
OWNER_PATHS = ("/api/v1/postgres/single/{instance_id}", "/api/v1/postgres/cluster/{cluster_id}")
OWNERS = {
    "instance_id": "Id of the `pgfleet_instance` it belongs to. Set exactly one of `instance_id` and `cluster_id`.",
    "cluster_id": "Id of the `pgfleet_cluster` it belongs to. Set exactly one of `instance_id` and `cluster_id`.",
}
ON_INSTANCE = {"instance_id": Ref("pgfleet_instance.example.id")}


def under_owner(suffix: str) -> tuple[str, ...]:
    return tuple(f"{path}/{suffix}" for path in OWNER_PATHS)


TENANT = ResourceSpec(
    name="tenant",
    path=under_owner("tenants"),
    parents=OWNERS,
    create=TenantCreate,
    response=TenantCreated,
    description=(
        "A tenant of an instance or a cluster: its own database (or schema), login role and quotas. "
        "The API cannot change a tenant, so changing any argument replaces it: its database or schema "
        "is dropped, after a logical backup. `initial_password` is generated when absent; it is known "
        "only to the Terraform state that created the tenant (an imported tenant has none)."
    ),
    id_field="tenant_id",
    id_description="The tenant id (`tenant_id`).",
    listed="tenants",
    sources={"initial_user": "user", "initial_password": "credentials.password"},
    generated=("initial_user", "initial_password"),
    computed=(
        Computed("status"),
        Computed("database_name"),
        Computed("schema_name"),
        Computed("uri", "credentials.uri", sensitive=True, create_only=True),
    ),
    force_new=("tenant_id", "mode", "initial_user", "initial_password", "quota"),
    descriptions={"quota": "Limits of the tenant's storage and sessions; absent ones are unlimited."},
    example={**ON_INSTANCE, "quota": {"max_storage_mb": 10240, "max_connections": 50}},
)

QUOTA = ResourceSpec(
    name="quota",
    path=under_owner("quota"),
    parents=OWNERS,
    create=QuotaUpdate,
    response=Quota,
    description=(
        "The quotas of an instance or a cluster: storage and connection limits, alert thresholds, "
        "scale to zero. Every argument changes in place; destroying the resource sets the quotas back "
        "to none (unlimited, default thresholds)."
    ),
    singleton=Singleton(reset=True),
    id_field="resource_id",
    id_description="Id of the instance or cluster (a quota has no id of its own).",
    in_place=(InPlaceUpdate.document(QuotaUpdate),),
    computed=(Computed("storage_limit_mb", stable=True), Computed("writes_suspended")),
    descriptions={"alert_thresholds": "When to alert, before a limit is reached."},
    example={**ON_INSTANCE, "max_storage_mb": 20480, "max_connections": 100},
)


def schedule_expression(text: str | None) -> str | None:
    """How the API stores a schedule expression: spaces collapsed, six bare cron fields as
    `cron(...)`, empty as none."""
    if text is None or not text.strip():
        return None
    collapsed = " ".join(text.split())
    return collapsed if collapsed.startswith(("cron(", "rate(", "at(")) else f"cron({collapsed})"


BACKUP_SCHEDULE = ResourceSpec(
    name="backup_schedule",
    path=under_owner("backup/schedule"),
    parents=OWNERS,
    create=BackupScheduleUpdate,
    response=BackupScheduleView,
    description=(
        "The backup schedule of an instance or a cluster: full and incremental backups, and how long "
        "they are kept. Every argument changes in place; destroying the resource removes the schedules."
    ),
    singleton=Singleton(reset=True),
    id_field="resource_id",
    id_description="Id of the instance or cluster (a schedule has no id of its own).",
    in_place=(InPlaceUpdate.document(BackupScheduleUpdate),),
    equivalent={"full_backup_cron": schedule_expression, "incremental_backup_cron": schedule_expression},
    computed=(
        Computed("next_full_backup_at", description="When the next full backup starts (UTC), if scheduled."),
        Computed(
            "next_incremental_backup_at",
            description="When the next incremental backup starts (UTC), if scheduled.",
        ),
    ),
    descriptions={"enabled": "false: keep the expressions but take no scheduled backup."},
    example={**ON_INSTANCE, "full_backup_cron": "cron(0 3 * * ? *)", "retention_days": 14},
)


class NotificationConfiguration(CamelModel):
    """One object for every channel type: set the attributes of the channel's `type` only (the API
    refuses the others)."""

    provider: Literal["smtp", "ses"] | None = Field(
        default=None, description="EMAIL: `smtp` (default) or `ses` (AWS only)."
    )
    host: str | None = Field(default=None, description="EMAIL: the SMTP server.")
    port: int | None = Field(
        default=None, description='EMAIL: the SMTP port (default 25, 465 with `tls = "ssl"`).'
    )
    tls: Literal["none", "starttls", "ssl"] | None = Field(
        default=None, description="EMAIL: how the SMTP connection is secured (default `none`)."
    )
    username: str | None = Field(default=None, description="EMAIL: the SMTP login.")
    password: SecretStr | None = Field(
        default=None, description="EMAIL: the SMTP password (kept in Secrets Manager)."
    )
    from_address: str | None = Field(default=None, alias="from", description="EMAIL: the sender's address.")
    to: list[str] | None = Field(default=None, description="EMAIL: the recipients.")
    webhook_url: SecretStr | None = Field(
        default=None, description="SLACK: the incoming webhook URL (kept in Secrets Manager)."
    )
    url: str | None = Field(default=None, description="WEBHOOK: where to POST the signed JSON.")
    secret: SecretStr | None = Field(
        default=None,
        description="WEBHOOK: the HMAC-SHA256 key of `X-Pgfleet-Signature`, 16 characters or more (kept in Secrets Manager).",
    )
    headers: dict[str, str] | None = Field(default=None, description="WEBHOOK: more request headers.")
    routing_key: SecretStr | None = Field(
        default=None, description="PAGERDUTY: the Events API v2 routing key (kept in Secrets Manager)."
    )
    events_url: str | None = Field(
        default=None, description="PAGERDUTY: the Events API v2 endpoint (default PagerDuty's)."
    )
    phone_number: str | None = Field(default=None, description="SMS: the phone number, E.164 (`+14155550100`).")  # fmt: skip


class NotificationChannelArguments(CamelModel):
    type: Literal["EMAIL", "SLACK", "SMS", "WEBHOOK", "PAGERDUTY"] = Field(description="The kind of channel.")
    name: ChannelName = Field(description="A name people recognise.")
    configuration: NotificationConfiguration = Field(description="The settings of the channel's `type`.")
    is_enabled: bool = Field(default=True, description="false: keep the channel but send it nothing.")
    routing: Routing = Field(default_factory=Routing, description="Which alerts the channel receives.")
    tenant_id: str | None = Field(
        default=None,
        description="The tenant whose alerts it receives (a platform token only; `*`: every tenant). "
        "Defaults to the token's tenant.",
    )


def masked_configuration(value: dict[str, object] | None) -> dict[str, object] | None:
    """A configuration as the API shows it: secrets masked, unset attributes left out."""
    if value is None:
        return None
    return {k: (MASK if k in SECRET_CONFIGURATION_FIELDS else v) for k, v in value.items() if v is not None}


NOTIFICATION_CHANNEL = ResourceSpec(
    name="notification_channel",
    path="/api/v1/monitoring/notifications/channels",
    create=NotificationChannelArguments,
    response=NotificationChannel,
    description=(
        "A notification channel: where alerts are sent (EMAIL, SLACK, SMS, WEBHOOK, PAGERDUTY). `name`, "
        "`configuration`, `is_enabled` and `routing` change in place; changing `type` or `tenant_id` replaces "
        "it. Secrets (`password`, `webhook_url`, `secret`, `routing_key`) are kept in Secrets Manager and the "
        "API shows them masked: state keeps the configured values, and an imported channel has masked ones "
        "until the next apply sets them."
    ),
    id_field="channelId",
    id_description="The channel id (`channelId`, `nch-...`).",
    sources={"is_enabled": "isEnabled", "tenant_id": "tenantId"},
    generated=("tenant_id",),
    equivalent={"configuration": masked_configuration},
    computed=(
        Computed(
            "test_status",
            "testStatus",
            description="PASSED, FAILED or PENDING (not tested since it changed).",
        ),
        Computed("last_test_at", "lastTestAt"),
        Computed("last_test_error", "lastTestError"),
    ),
    in_place=(InPlaceUpdate("", ("name", "configuration", "is_enabled", "routing"), method="PUT"),),
    force_new=("type", "tenant_id"),
    example={
        "type": "WEBHOOK",
        "name": "dba-on-call",
        "configuration": {"url": "https://hooks.example.com/pgfleet", "secret": "change-me-0123456789"},
        "routing": {"severities": ["HIGH", "CRITICAL"]},
    },
)

INSTANCE_DATA = DataSourceSpec(
    INSTANCE, description="Looks up a single PostgreSQL instance by id (its password is not readable)."
)
CLUSTER_DATA = DataSourceSpec(
    CLUSTER,
    description="Looks up an HA cluster by id, with its nodes (its password and URIs are not readable).",
)

RESOURCES: tuple[ResourceSpec, ...] = (
    INSTANCE, CLUSTER, READ_REPLICA, TENANT, QUOTA, BACKUP_SCHEDULE, NOTIFICATION_CHANNEL,
)  # fmt: skip
DATA_SOURCES: tuple[DataSourceSpec, ...] = (INSTANCE_DATA, CLUSTER_DATA)
