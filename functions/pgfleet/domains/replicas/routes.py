"""/api/v1/postgres/single/{id}/replicas: read replicas of single instances."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from pgfleet.core.domain import requires
from pgfleet.core.routing import header, ports, principal
from pgfleet.domains.instances import InstanceId
from pgfleet.domains.replicas import service as replicas
from pgfleet.domains.replicas.models import Replica, ReplicaCreate, ReplicaList, ReplicasCreated

router = Router()

ReplicaId = Annotated[str, Path(pattern=r"^pgr-[0-9a-f]{12}$", description="Replica id.")]


@router.post(
    "/<instance_id>/replicas",
    summary="Add read replicas to a running instance",
    status_code=202,
    responses={202: {"description": "Accepted"}},
)
@requires("postgres:write")
def create_replicas(instance_id: InstanceId, body: ReplicaCreate) -> ReplicasCreated:
    created = replicas.create(
        ports(), principal(router), instance_id, body, header(router, "Idempotency-Key")
    )
    return ReplicasCreated.model_validate(created)


@router.get("/<instance_id>/replicas", summary="List an instance's replicas with their replication lag")
@requires("postgres:read")
def list_replicas(instance_id: InstanceId) -> ReplicaList:
    return ReplicaList.model_validate(replicas.list_for_instance(ports(), principal(router), instance_id))


@router.delete("/<instance_id>/replicas/<replica_id>", summary="Delete a read replica", status_code=202)
@requires("postgres:write")
def delete_replica(instance_id: InstanceId, replica_id: ReplicaId) -> Replica:
    return Replica.model_validate(replicas.delete(ports(), principal(router), instance_id, replica_id))
