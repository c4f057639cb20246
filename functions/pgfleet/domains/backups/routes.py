"""Backups, restores and backup schedules of one instance or cluster (seed 000, snake_case):

    POST /api/v1/postgres/{single|cluster}/{id}/backup          take a backup now (202)
    GET  /api/v1/postgres/{single|cluster}/{id}/backups         backups and restorable window
    POST /api/v1/postgres/{single|cluster}/{id}/restore         restore (202)
    GET|PUT /api/v1/postgres/{single|cluster}/{id}/backup/schedule

The same routes for both resource types, on one router each (`single_router`,
`cluster_router`), included with the prefixes of the resource routers. Annotations are
evaluated at definition time (no `from __future__ import annotations`) so that Powertools
sees the real types of the generated routes.
"""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from pgfleet.core.domain import requires
from pgfleet.core.routing import ports, principal
from pgfleet.domains.archive import BackupScheduleUpdate, BackupScheduleView
from pgfleet.domains.backups import restores
from pgfleet.domains.backups import service as backups
from pgfleet.domains.backups.models import (
    BackupAccepted,
    BackupListing,
    BackupRequest,
    RestoreAccepted,
    RestoreRequest,
)

single_router = Router()
cluster_router = Router()

InstanceId = Annotated[str, Path(pattern=r"^pgi-[0-9a-f]{12}$", description="Instance id.")]
ClusterId = Annotated[str, Path(pattern=r"^pgc-[0-9a-f]{12}$", description="Cluster id.")]
OptionalBackupRequest = Annotated[BackupRequest | None, Body(description='Default: {"type": "full"}.')]


def add_backup_routes(router: Router, kind: str, noun: str, resource_id_type: Any) -> None:
    """Register the backup routes of one resource type on `router`."""

    def backup(resource_id: resource_id_type, body: OptionalBackupRequest = None) -> BackupAccepted:  # type: ignore[valid-type]
        backup_type = (body or BackupRequest()).type
        return BackupAccepted.model_validate(
            backups.request_backup(ports(), principal(router), kind, resource_id, backup_type)
        )

    def list_backups(resource_id: resource_id_type) -> BackupListing:  # type: ignore[valid-type]
        return BackupListing.model_validate(
            backups.list_for_resource(ports(), principal(router), kind, resource_id)
        )

    def restore(resource_id: resource_id_type, body: RestoreRequest) -> RestoreAccepted:  # type: ignore[valid-type]
        return RestoreAccepted.model_validate(
            restores.restore(ports(), principal(router), kind, resource_id, body)
        )

    def get_schedule(resource_id: resource_id_type) -> BackupScheduleView:  # type: ignore[valid-type]
        return BackupScheduleView.model_validate(
            backups.get_schedule(ports(), principal(router), kind, resource_id)
        )

    def put_schedule(resource_id: resource_id_type, body: BackupScheduleUpdate) -> BackupScheduleView:  # type: ignore[valid-type]
        return BackupScheduleView.model_validate(
            backups.put_schedule(ports(), principal(router), kind, resource_id, body)
        )

    routes = (
        ("post", "/<resource_id>/backup", requires("backup:create")(backup), f"Back up the {noun} now", 202),
        (
            "get",
            "/<resource_id>/backups",
            requires("backup:read")(list_backups),
            f"Backups of the {noun} and its restorable window",
            200,
        ),
        (
            "post",
            "/<resource_id>/restore",
            requires("backup:restore")(restore),
            f"Restore the {noun} (in place or into a new one)",
            202,
        ),
        (
            "get",
            "/<resource_id>/backup/schedule",
            requires("backup:read")(get_schedule),
            f"The {noun}'s backup schedule",
            200,
        ),
        (
            "put",
            "/<resource_id>/backup/schedule",
            requires("backup:schedule")(put_schedule),
            f"Set the {noun}'s backup schedule",
            200,
        ),
    )
    for method, path, handler, summary, status in routes:
        handler.__name__ = f"{handler.__name__}_{noun}"
        getattr(router, method)(path, summary=summary, status_code=status)(handler)


add_backup_routes(single_router, "instance", "instance", InstanceId)
add_backup_routes(cluster_router, "cluster", "cluster", ClusterId)
