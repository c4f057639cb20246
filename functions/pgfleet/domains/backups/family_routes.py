"""/api/v1/backup: the production-readiness backup and recovery API (seed 003, camelCase).

Paths, verbs, enums and field names as the seed writes them; `targetId` on execute and
GET /verify/{verificationId} are additions in the seed's style.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core.domain import requires
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize
from pgfleet.core.responses import JSON
from pgfleet.core.routing import ports, principal
from pgfleet.domains.backups import restores
from pgfleet.domains.backups import service as backups
from pgfleet.domains.backups import verification as backup_verification
from pgfleet.domains.backups.models import (
    BACKUP_ID_PATTERN,
    BackupExecuteRequest,
    BackupExecuteResponse,
    BackupListResponse,
    BackupStatusResponse,
    BackupTypeEnum,
    BackupVerifyResponse,
    RecoveryInitiateRequest,
    RecoveryInitiateResponse,
    RecoveryStatusResponse,
)

router = Router()

BackupId = Annotated[
    str, Path(pattern=BACKUP_ID_PATTERN, description="A backup (bkp-...) or backup set (bks-...).")
]
PhysicalBackupId = Annotated[str, Path(pattern=r"^bkp-[0-9a-f]{12}$")]


@router.post(
    "/execute", summary="Back up one resource, or every resource of a tenant as a set", status_code=202
)
@requires("backup:create")
def execute_backup(body: BackupExecuteRequest) -> BackupExecuteResponse:
    return backups.execute(ports(), principal(router), body)


@router.get("/status/<backupId>", summary="Status and live progress of a backup or backup set")
@requires("backup:read")
def backup_status(backupId: BackupId) -> BackupStatusResponse:  # noqa: N803 (the seed's name)
    return backups.status(ports(), principal(router), backupId)


@router.get("/list", summary="Backups, newest first, filtered and paginated")
@requires("backup:read")
def list_backups(
    tenant_id: Annotated[str | None, Query(alias="tenantId", max_length=128)] = None,
    backup_type: Annotated[BackupTypeEnum | None, Query(alias="backupType")] = None,
    status: Annotated[Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED"] | None, Query()] = None,
    start_date: Annotated[
        datetime | None, Query(alias="startDate", description="ISO 8601; backups requested at or after.")
    ] = None,
    end_date: Annotated[
        datetime | None, Query(alias="endDate", description="ISO 8601; backups requested at or before.")
    ] = None,
    page: PageNumber = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> BackupListResponse:
    return backups.list_backups(
        ports(), principal(router), tenant_id=tenant_id, backup_type=backup_type, status_filter=status,
        start=start_date, end=end_date, query=PageQuery(page=page, page_size=page_size),
    )  # fmt: skip


@router.post(
    "/verify/<backupId>", summary="Verify a backup: CHECKSUM, STRUCTURE, CONSISTENCY", status_code=202
)
@requires("backup:verify")
def verify_backup(backupId: PhysicalBackupId) -> BackupVerifyResponse:  # noqa: N803
    return backup_verification.request(ports(), principal(router), backupId)


@router.get("/verify/<verificationId>", summary="Result of a verification")
@requires("backup:read")
def verification(verificationId: Annotated[str, Path(pattern=r"^vrf-[0-9a-f]{12}$")]) -> BackupVerifyResponse:  # noqa: N803
    return backup_verification.get(ports(), principal(router), verificationId)


@router.post(
    "/recovery/initiate",
    summary="Recover from a backup (FULL, POINT_IN_TIME, SELECTIVE); validateOnly returns the plan only",
    responses={
        200: {"description": "validateOnly: the plan; nothing changed"},
        202: {"description": "Recovery started"},
    },
)
@requires("backup:restore")
def initiate_recovery(body: RecoveryInitiateRequest) -> Response[RecoveryInitiateResponse]:
    result = restores.initiate(ports(), principal(router), body)
    return Response(status_code=200 if body.validateOnly else 202, content_type=JSON, body=result)


@router.get("/recovery/status/<recoveryId>", summary="Progress and integrity results of a recovery")
@requires("backup:read")
def recovery_status(
    recoveryId: Annotated[str, Path(pattern=r"^rcv-[0-9a-f]{12}$")],
) -> RecoveryStatusResponse:  # noqa: N803
    return restores.status(ports(), principal(router), recoveryId)
