"""/api/v1/operations: progress of long work."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from pgfleet.core import operations
from pgfleet.core.domain import requires
from pgfleet.core.routing import ports, principal
from pgfleet.domains.operations.models import Operation

router = Router()


@router.get("/<operation_id>", summary="Status, progress and steps of an operation")
@requires("operations:read")
def get_operation(operation_id: Annotated[str, Path(pattern=r"^op-[0-9a-f]{12}$")]) -> Operation:
    op = operations.get_visible(ports(), principal(router), operation_id)
    return Operation.model_validate(operations.public_view(op))
