"""/api/v1/postgres/{single|cluster}/<id>/upgrade and /upgrade/check: major-version upgrades."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from pgfleet.core.domain import requires
from pgfleet.core.routing import ports, principal
from pgfleet.domains import clusters, instances
from pgfleet.domains.clusters import ClusterId
from pgfleet.domains.instances import InstanceId
from pgfleet.domains.upgrades import service as upgrades
from pgfleet.domains.upgrades.models import UpgradeAccepted, UpgradeCheck, UpgradeMode, UpgradeRequest


def upgrade_routes(kind: str, resource_id_type: Any) -> Router:
    router = Router()
    noun = "single instance" if kind == instances.KIND else "cluster"

    @router.post(
        "/<resource_id>/upgrade",
        summary=f"Upgrade a {noun} to a new PostgreSQL major version (in_place or blue_green)",
        status_code=202,
        responses={
            202: {
                "description": "The upgrade is accepted; follow its operation",
                "content": {"application/json": {"model": UpgradeAccepted}},
            },
            200: {
                "description": "dry_run: the pre-flight report (nothing changed)",
                "content": {"application/json": {"model": UpgradeCheck}},
            },
        },
    )
    @requires("postgres:write")
    def upgrade(resource_id: resource_id_type, body: UpgradeRequest) -> Response[str]:  # type: ignore[valid-type]
        caller = principal(router)
        if body.dry_run:
            report = UpgradeCheck.model_validate(upgrades.preflight(ports(), caller, kind, resource_id, body))
            return Response(status_code=200, content_type="application/json", body=report.model_dump_json())
        accepted = UpgradeAccepted.model_validate(upgrades.upgrade(ports(), caller, kind, resource_id, body))
        return Response(status_code=202, content_type="application/json", body=accepted.model_dump_json())

    @router.get(
        "/<resource_id>/upgrade/check",
        summary=f"Pre-flight checks of an upgrade of a {noun}, changing nothing",
    )
    @requires("postgres:read")
    def upgrade_check(
        resource_id: resource_id_type,  # type: ignore[valid-type]
        target_version: Annotated[str, Query(pattern=r"^\d{1,2}$")],
        mode: Annotated[UpgradeMode, Query()] = "in_place",
    ) -> UpgradeCheck:
        body = UpgradeRequest(target_version=target_version, mode=mode, dry_run=True)
        return UpgradeCheck.model_validate(
            upgrades.preflight(ports(), principal(router), kind, resource_id, body)
        )

    upgrade.__name__ = f"upgrade_{kind}"
    upgrade_check.__name__ = f"upgrade_check_{kind}"
    return router


single_router = upgrade_routes(instances.KIND, InstanceId)
cluster_router = upgrade_routes(clusters.KIND, ClusterId)
