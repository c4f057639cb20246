"""/api/v1/postgres/{single|cluster}/<id>/quota: storage and connection quotas, alert
thresholds, auto-pause.

Annotations are evaluated at definition time (see routers/tenants.py).
"""

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from pgfleet.core.domain import requires
from pgfleet.core.resources import a
from pgfleet.core.routing import ports, principal
from pgfleet.domains.clusters import ClusterId
from pgfleet.domains.instances import InstanceId
from pgfleet.domains.quotas import service as quotas
from pgfleet.domains.quotas.models import Quota, QuotaUpdate


def quota_routes(kind: str, resource_id_type: Any) -> Router:
    router = Router()

    @router.put(
        "/<resource_id>/quota", summary=f"Set the quotas of {a(kind)} (enforced at once when it runs)"
    )
    @requires("postgres:write")
    def put_quota(resource_id: resource_id_type, body: QuotaUpdate) -> Quota:  # type: ignore[valid-type]
        return Quota.model_validate(quotas.put(ports(), principal(router), kind, resource_id, body))

    @router.get("/<resource_id>/quota", summary=f"The quotas of {a(kind)}, its last measured usage")
    @requires("postgres:read")
    def get_quota(resource_id: resource_id_type) -> Quota:  # type: ignore[valid-type]
        return Quota.model_validate(quotas.get(ports(), principal(router), kind, resource_id))

    for handler in (put_quota, get_quota):
        handler.__name__ = f"{handler.__name__}_of_{kind}"
    return router


single_router = quota_routes("instance", InstanceId)
cluster_router = quota_routes("cluster", ClusterId)
