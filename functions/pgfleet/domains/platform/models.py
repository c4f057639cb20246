"""The detailed health of the platform, in the production-readiness API's shape (the seed's
SystemHealthResponse: camelCase on the wire, snake_case attributes)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pgfleet.core.wire import CamelModel

HealthStatus = Literal["HEALTHY", "WARNING", "CRITICAL", "UNKNOWN"]
# Worst last: the overall status is the worst of the components'. A component whose state could
# not be told (UNKNOWN) is no better than healthy, and no worse than one known to be degraded.
SEVERITY: tuple[HealthStatus, ...] = ("HEALTHY", "UNKNOWN", "WARNING", "CRITICAL")


def worst(statuses: list[HealthStatus]) -> HealthStatus:
    """The worst of `statuses` (HEALTHY for none)."""
    return max(statuses, key=SEVERITY.index, default="HEALTHY")


class HealthThreshold(CamelModel):
    warning: float | None = Field(description="The value from which the metric makes its component WARNING.")
    critical: float | None = Field(
        description="The value from which it makes it CRITICAL; null when no value does."
    )


class HealthMetric(CamelModel):
    name: str
    value: float
    unit: str
    threshold: HealthThreshold | None = Field(
        default=None,
        description="Where the metric changes its component's status, null when it does not. Higher "
        "is worse, unless the warning value is above the critical one (free disk: lower is worse).",
    )
    trend: Literal["IMPROVING", "STABLE", "DEGRADING"] | None = Field(
        default=None,
        description="Always null: health checks keep no history to compare the value with.",
    )


class ComponentHealth(CamelModel):
    component: str = Field(
        description="metadata, queue, secrets, scheduler, engine, etcd; `server:<id>` for a managed "
        "server; `api` (the platform's dependencies as one) for a token confined to a tenant.",
        examples=["etcd", "server:pgi-0123456789ab"],
    )
    status: HealthStatus
    latency_ms: float | None = Field(
        description="How long the check took (milliseconds); null when it did not finish in time."
    )
    message: str = Field(description="What the check found, in a sentence.")
    metrics: list[HealthMetric]
    last_check: str = Field(description="When the check ended (ISO 8601, UTC).")
    target_id: str | None = Field(default=None, description="The instance or cluster a server component is.")


class SystemHealthResponse(CamelModel):
    overall: HealthStatus = Field(description="The worst status of the components.")
    components: list[ComponentHealth]
    last_updated: str = Field(description="When the checks ended (ISO 8601, UTC).")
