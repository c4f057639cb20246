"""Major-version upgrades: the request, the pre-flight report and the accepted upgrade."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

UpgradeMode = Literal["in_place", "blue_green"]


class UpgradeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_version: str = Field(pattern=r"^\d{1,2}$", description="PostgreSQL major version to upgrade to.")
    mode: UpgradeMode = Field(
        default="in_place",
        description="in_place: pg_upgrade on the same servers, one planned downtime. blue_green: a new "
        "server at the target version fed by logical replication, then a cutover of writes.",
    )
    dry_run: bool = Field(default=False, description="Only run the pre-flight checks (200 with the report).")
    cutover_timeout_seconds: int = Field(
        default=300, ge=30, le=3600, description="blue_green: a cutover not done in this time is rolled back."
    )
    keep_old_hours: int = Field(
        default=24, ge=0, le=720, description="blue_green: how long the old (blue) server is kept, stopped."
    )


class UpgradeCheckItem(BaseModel):
    name: str
    passed: bool
    detail: str


class UpgradeCheck(BaseModel):
    resource_id: str
    kind: str
    from_version: str
    target_version: str
    mode: UpgradeMode
    passed: bool
    link: bool | None = Field(
        default=None,
        description="in_place: whether pg_upgrade would use hard links (not enough free disk for a copy).",
    )
    checks: list[UpgradeCheckItem]
    findings: list[str] = Field(description="Every failed check, one sentence each; empty when passed.")


class UpgradeAccepted(UpgradeCheck):
    status: str
    operation_id: str
