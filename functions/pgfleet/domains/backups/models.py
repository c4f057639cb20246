"""Backups, restores, schedules and verification: the shapes of both API families.

- `/api/v1/postgres/{single|cluster}/{id}/backup...` and `.../restore` (the infrastructure API,
  seed 000): snake_case.
- `/api/v1/backup/...` (the production-readiness API, seed 003): camelCase on the wire, field
  names and enums exactly as that seed writes them, through `CamelModel` (snake_case
  attributes, the spelling records are stored in).
Both read and write the same backup records (metadata kind "backup").
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from pgfleet.core.models import Credentials, ResourceName, StrictModel
from pgfleet.core.paging import Pagination
from pgfleet.core.wire import CamelModel
from pgfleet.domains.clusters import ClusterCredentials

BACKUP_ID_PATTERN = r"^bk[ps]-[0-9a-f]{12}$"
RESOURCE_ID_PATTERN = r"^(pgi|pgc)-[0-9a-f]{12}$"
BackupTypeName = Literal["full", "incremental", "differential"]
BackupStatus = Literal["pending", "running", "completed", "failed"]

# --- ISO 8601 durations ----------------------------------------------------------------------

_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


# The longest retention a backup may ask for: its expiry must stay a date.
MAX_DURATION = timedelta(days=365 * 100)


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration such as "P30D", "P1Y", "PT12H" (a year is 365 days, a month 30).
    Raises ValueError for anything else, for a zero duration, or one over 100 years."""
    match = _DURATION.match(text.strip().upper())
    if not match:
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P30D or PT12H")
    years, months, weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total_days = (
        365 * years + 30 * months + 7 * weeks + days + (hours * 3600 + minutes * 60 + seconds) / 86400
    )
    if total_days > MAX_DURATION.days:  # before timedelta, which overflows far sooner than float
        raise ValueError(f"the duration must be at most {MAX_DURATION.days // 365} years (P100Y)")
    value = timedelta(days=total_days)
    if value <= timedelta(0):
        raise ValueError("the duration must be longer than zero")
    return value


def format_duration(seconds: float) -> str:
    """Seconds as an ISO 8601 duration: 95 -> "PT1M35S"."""
    whole = max(1, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    return f"PT{parts}"


# --- the infrastructure API (snake_case) ------------------------------------------------------


class BackupRequest(StrictModel):
    type: BackupTypeName = Field(default="full", description="What to back up since the last backup.")


class BackupAccepted(BaseModel):
    backup_id: str
    operation_id: str
    resource_id: str
    type: BackupTypeName
    status: BackupStatus


class BackupSummary(BaseModel):
    backup_id: str
    timestamp: str = Field(description="When the backup finished (started, while it runs).")
    size_mb: float = Field(description="Size of the database the backup restores, in MB.")
    type: BackupTypeName
    status: BackupStatus


class BackupListing(BaseModel):
    backups: list[BackupSummary]
    earliest_restorable_time: str | None = Field(
        default=None, description="The earliest moment pitr_target may name (null without any backup)."
    )
    latest_restorable_time: str | None = Field(
        default=None, description="The latest moment whose WAL is archived; archiving lags by at most 60 s."
    )


class RestoreRequest(StrictModel):
    backup_id: str | None = Field(
        default=None,
        pattern=r"^bkp-[0-9a-f]{12}$",
        description="The backup to restore; default: the newest one before pitr_target (or the newest).",
    )
    restore_mode: Literal["overwrite", "new_instance"] = Field(
        default="new_instance",
        description="new_instance: a new instance (or cluster) of the same owner; overwrite: replace the data "
        "in place (a cluster's replicas are rebuilt).",
    )
    pitr_target: datetime | None = Field(
        default=None, description="Restore to exactly this moment (ISO 8601; UTC when no offset)."
    )
    name: ResourceName | None = Field(
        default=None, description="Name of the new instance (new_instance only)."
    )


class RestoreAccepted(BaseModel):
    restore_id: str = Field(description="Also the recoveryId of GET /api/v1/backup/recovery/status/{id}.")
    operation_id: str
    restore_mode: Literal["overwrite", "new_instance"]
    source_id: str
    target_id: str = Field(
        description="The instance or cluster restored into (the new one for new_instance)."
    )
    backup_id: str
    pitr_target: str | None = None
    status: str = Field(description="Status of the target resource.")
    credentials: ClusterCredentials | Credentials | None = Field(
        default=None, description="new_instance only, shown once: the new resource's password."
    )


# --- the production-readiness API (camelCase, as seed 003 writes it) ---------------------------

BackupTypeEnum = Literal["FULL", "INCREMENTAL", "DIFFERENTIAL"]
VerificationStatus = Literal["PENDING", "VERIFIED", "FAILED"]
CheckResult = Literal["PASSED", "FAILED", "WARNING"]
CheckType = Literal["CHECKSUM", "STRUCTURE", "CONSISTENCY"]


# Tags are kept on every backup record: bounded as AWS bounds resource tags.
BackupTags = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=128)],
        Annotated[str, StringConstraints(max_length=256)],
    ],
    Field(max_length=50, description="At most 50 tags; keys 1 to 128 characters, values at most 256."),
]


class BackupExecuteRequest(StrictModel):
    backupType: BackupTypeEnum
    tenantId: str | None = Field(
        default=None, max_length=128, description="Back up every resource of this tenant; null: system-wide."
    )
    retentionPeriod: str | None = Field(
        default=None, max_length=64, description="ISO 8601 duration, e.g. P30D; at most P100Y."
    )
    encryptionEnabled: bool | None = Field(
        default=None, description="Backups are always encrypted (aes-256-cbc); false is refused."
    )
    compressionLevel: int | None = Field(default=None, ge=1, le=9)
    tags: BackupTags | None = None
    targetId: str | None = Field(
        default=None, pattern=RESOURCE_ID_PATTERN, description="One instance (pgi-...) or cluster (pgc-...)."
    )

    @field_validator("retentionPeriod")
    @classmethod
    def _iso_duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("encryptionEnabled")
    @classmethod
    def _always_encrypted(cls, value: bool | None) -> bool | None:
        if value is False:
            raise ValueError("backups are always encrypted (aes-256-cbc): encryptionEnabled cannot be false")
        return value


class BackupExecuteResponse(CamelModel):
    backup_id: str
    status: Literal["INITIATED", "RUNNING", "COMPLETED", "FAILED"]
    estimated_duration: str
    backup_location: str
    message: str


class BackupStatusResponse(CamelModel):
    backup_id: str
    status: Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
    progress: int = Field(ge=0, le=100)
    start_time: str
    end_time: str | None = None
    duration: float | None = Field(default=None, description="Seconds.")
    backup_size: int | None = Field(default=None, description="Bytes stored in the repository.")
    error_message: str | None = None
    verification_status: VerificationStatus


class BackupInfo(CamelModel):
    backup_id: str
    backup_type: str
    status: str
    start_time: str
    end_time: str | None = None
    backup_size: int
    retention_expiry: str
    verification_status: str
    tags: dict[str, str]


class BackupListResponse(CamelModel):
    backups: list[BackupInfo]
    pagination: Pagination


class RecoveryInitiateRequest(StrictModel):
    backupId: str = Field(pattern=r"^bkp-[0-9a-f]{12}$")
    recoveryType: Literal["FULL", "POINT_IN_TIME", "SELECTIVE"]
    targetTime: datetime | None = Field(default=None, description="POINT_IN_TIME: the moment to recover to.")
    targetTenant: str | None = Field(
        default=None, max_length=128, description="SELECTIVE: the tenant whose database comes back."
    )
    recoveryLocation: Literal["NEW_INSTANCE", "IN_PLACE"] | None = Field(
        default=None,
        description="NEW_INSTANCE (default for FULL and POINT_IN_TIME) or IN_PLACE (SELECTIVE always is).",
    )
    validateOnly: bool = Field(default=False, description="Return the plan and change nothing.")


class RecoveryStep(CamelModel):
    order: int
    name: str
    description: str
    estimated_duration: str


class RecoveryPlan(CamelModel):
    steps: list[RecoveryStep]
    total_estimated_time: str
    data_integrity_checks: list[str]
    rollback_procedure: str


class RecoveryInitiateResponse(CamelModel):
    recovery_id: str
    status: Literal["INITIATED", "RUNNING", "COMPLETED", "FAILED"]
    estimated_duration: str
    recovery_plan: RecoveryPlan


# One check a recovery ran; the recovery record's `integrity` holds these (`to_record()`).
class IntegrityCheckResult(CamelModel):
    check: str
    status: CheckResult
    details: str


class RecoveryStatusResponse(CamelModel):
    recovery_id: str
    status: Literal["INITIATED", "RUNNING", "COMPLETED", "FAILED"]
    progress: int = Field(ge=0, le=100)
    current_step: str
    start_time: str
    end_time: str | None = None
    error_message: str | None = None
    data_integrity_results: list[IntegrityCheckResult] | None = None


# One check of a verification; the verification record's `checks` holds these (`to_record()`).
class IntegrityCheck(CamelModel):
    check_type: CheckType
    status: CheckResult
    details: str
    error_count: int | None = None


class BackupVerifyResponse(CamelModel):
    verification_id: str
    status: Literal["RUNNING", "COMPLETED", "FAILED"]
    integrity_checks: list[IntegrityCheck]
    overall_result: CheckResult
