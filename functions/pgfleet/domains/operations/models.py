"""Operations: long work, run step by step by the worker."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

OperationStatus = Literal["pending", "running", "succeeded", "failed"]
StepStatus = Literal["pending", "running", "succeeded", "failed"]


class OperationStep(BaseModel):
    name: str
    status: StepStatus = "pending"
    reason: str | None = Field(default=None, description="Why the step did what it did.")
    started_at: str | None = None
    finished_at: str | None = None


class Operation(BaseModel):
    id: str
    type: str = Field(description="What the operation does, e.g. instance.create.")
    resource_id: str
    tenant_id: str
    status: OperationStatus
    progress: int = Field(ge=0, le=100)
    steps: list[OperationStep]
    error: str | None = None
    detail: dict[str, Any] | None = Field(
        default=None,
        description="What the running step measures, e.g. the replication lag of a blue/green upgrade.",
    )
    created_at: str
    updated_at: str
    started_at: str | None = None
    finished_at: str | None = None
