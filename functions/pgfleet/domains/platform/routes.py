"""Health and version (no authentication); the detailed health and the Prometheus metrics
(`monitoring:read`, scoped by the token: see `health` and `metrics`)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from pydantic import BaseModel

from pgfleet import __version__
from pgfleet.core import telemetry
from pgfleet.core.domain import PUBLIC, requires
from pgfleet.core.routing import ports, principal
from pgfleet.domains.platform import health as health_checks
from pgfleet.domains.platform import metrics as fleet_metrics
from pgfleet.domains.platform.models import SystemHealthResponse

router = Router()


class Health(BaseModel):
    status: str


class Version(BaseModel):
    name: str
    version: str
    api: str


@router.get("/api/health", summary="Liveness of the API")
@requires(PUBLIC)
def health() -> Health:
    return Health(status="ok")


@router.get(
    "/api/health/detailed",
    summary="Every dependency checked, with its latency (a tenant's token: its servers and the API)",
)
@requires("monitoring:read")
def health_detailed() -> SystemHealthResponse:
    return health_checks.detailed(ports(), principal(router))


@router.get(
    "/api/metrics",
    summary="Prometheus metrics (a tenant's token: its servers' series only)",
    responses={
        200: {
            "description": "The Prometheus text exposition format, version 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
@requires("monitoring:read")
def metrics() -> Response[str]:
    body = fleet_metrics.exposition(ports(), principal(router))
    return Response(status_code=200, content_type=telemetry.CONTENT_TYPE, body=body.decode())


@router.get("/api/version", summary="Version of the control plane")
@requires(PUBLIC)
def version() -> Version:
    return Version(name="pgfleet", version=__version__, api="v1")
