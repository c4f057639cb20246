"""/api/v1/postgres/{single|cluster}/<id>/resize, /pause, /resume: compute size and scale to zero.

Annotations are evaluated at definition time (see routers/tenants.py).
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from pgfleet.core import resources
from pgfleet.core.domain import requires
from pgfleet.core.routing import ports, principal
from pgfleet.domains import clusters, instances, tenants
from pgfleet.domains.clusters import Cluster, ClusterId
from pgfleet.domains.instances import Instance, InstanceId
from pgfleet.domains.sizing import service as sizing
from pgfleet.domains.sizing.models import ResizeRequest


def sizing_routes(
    kind: str, resource_id_type: Any, model: Any, view: Callable[[dict[str, Any]], dict[str, Any]]
) -> Router:
    """Resize, pause and resume of one resource kind; each answers 202 with the resource."""
    router = Router()
    rtype = instances.INSTANCE if kind == instances.KIND else clusters.CLUSTER

    @router.post(
        "/<resource_id>/resize",
        summary=f"Change the CPU, memory or storage of {resources.a(kind)}"
        + (" (rolling: replicas, then a switchover)" if kind == clusters.KIND else " (one restart)"),
        status_code=202,
    )
    @requires("postgres:write")
    def resize(resource_id: resource_id_type, body: ResizeRequest) -> model:  # type: ignore[valid-type]
        return model.model_validate(view(sizing.resize(ports(), principal(router), kind, resource_id, body)))  # type: ignore[no-any-return]

    def lifecycle(action: str) -> Callable[..., Any]:
        def handler(resource_id: resource_id_type) -> model:  # type: ignore[valid-type]
            caller = principal(router)
            # 404 for another tenant's id before anything says what state it is in.
            resources.get_visible(ports(), caller, rtype, resource_id)
            # A tenant being deleted needs its server up until its drop is done.
            tenants.require_no_tenant_operation(ports(), resource_id)
            record = resources.transition(ports(), caller, rtype, resource_id, action)
            return model.model_validate(view(record))  # type: ignore[no-any-return]

        handler.__name__ = f"{action}_{kind}"
        return requires("postgres:write")(handler)

    router.post(
        "/<resource_id>/pause",
        summary=f"Pause {resources.a(kind)}: stop its compute, keep its data, endpoint and backups",
        status_code=202,
    )(lifecycle("pause"))
    router.post("/<resource_id>/resume", summary=f"Resume a paused {kind}", status_code=202)(
        lifecycle("resume")
    )
    resize.__name__ = f"resize_{kind}"
    return router


def _instance_view(record: dict[str, Any]) -> dict[str, Any]:
    return instances.view(ports(), record)


def _cluster_view(record: dict[str, Any]) -> dict[str, Any]:
    return clusters.view(ports(), record)


single_router = sizing_routes(instances.KIND, InstanceId, Instance, _instance_view)
cluster_router = sizing_routes(clusters.KIND, ClusterId, Cluster, _cluster_view)
