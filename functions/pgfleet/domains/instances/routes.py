"""/api/v1/postgres/single: single PostgreSQL instances."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core.domain import requires
from pgfleet.core.lifecycle_routes import add_lifecycle_routes
from pgfleet.core.routing import header, ports, principal
from pgfleet.domains.instances import service as instances
from pgfleet.domains.instances.models import (
    Instance,
    InstanceCreate,
    InstanceCreated,
    InstanceList,
    InstanceLogs,
    InstanceStats,
)

router = Router()

InstanceId = Annotated[str, Path(pattern=r"^pgi-[0-9a-f]{12}$", description="Instance id.")]


@router.post(
    "/", summary="Create a single instance", status_code=202, responses={202: {"description": "Accepted"}}
)
@requires("postgres:write")
def create_instance(body: InstanceCreate) -> InstanceCreated:
    created = instances.create(ports(), principal(router), body, header(router, "Idempotency-Key"))
    return InstanceCreated.model_validate(created)


@router.get("/", summary="List single instances")
@requires("postgres:read")
def list_instances(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> InstanceList:
    records, token = instances.list_visible(ports(), principal(router), limit, next_token)
    return InstanceList(
        instances=[Instance.model_validate(instances.view(ports(), r)) for r in records], next_token=token
    )


@router.get("/<instance_id>", summary="Get a single instance")
@requires("postgres:read")
def get_instance(instance_id: InstanceId) -> Instance:
    return Instance.model_validate(
        instances.view(ports(), instances.get_visible(ports(), principal(router), instance_id))
    )


def _view(record: dict[str, Any]) -> dict[str, Any]:
    return instances.view(ports(), record)


add_lifecycle_routes(router, "instance", InstanceId, Instance, instances.transition, _view)


@router.get("/<instance_id>/stats", summary="Live statistics read from the server")
@requires("postgres:read")
def instance_stats(instance_id: InstanceId) -> InstanceStats:
    return InstanceStats.model_validate(instances.stats(ports(), principal(router), instance_id))


@router.get("/<instance_id>/logs", summary="The server's log lines, newest last")
@requires("postgres:read")
def instance_logs(
    instance_id: InstanceId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    since: Annotated[
        datetime | None, Query(description="Only lines at or after this time (ISO 8601).")
    ] = None,
) -> InstanceLogs:
    return InstanceLogs.model_validate(instances.logs(ports(), principal(router), instance_id, limit, since))
