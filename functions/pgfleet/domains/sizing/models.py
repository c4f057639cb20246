"""Resize requests: new CPU, memory or storage for an instance or a cluster."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator
from pydantic.fields import FieldInfo

from pgfleet.core.models import StrictModel
from pgfleet.domains.instances import Cpu, Memory, Storage


def _unchanged_when_absent(field: Any) -> Any:
    """The create field's bounds and description, optional (absent: unchanged). Typed Any like
    pydantic's own `Field()`, so it can stand as a field's default."""
    return FieldInfo.merge_field_infos(
        field, default=None, description=f"{field.description} Absent: unchanged."
    )


class ResizeRequest(StrictModel):
    """PostgreSQL settings (shared_buffers, work_mem, max_connections, parallel workers, ...)
    follow memory and CPU, and cgroup v1 enforces them where the host allows. Storage is the
    limit of the data directory; it cannot shrink below what is in use (409)."""

    cpu: int | None = _unchanged_when_absent(Cpu)
    memory: int | None = _unchanged_when_absent(Memory)
    storage: int | None = _unchanged_when_absent(Storage)

    @model_validator(mode="after")
    def _something_to_change(self) -> ResizeRequest:
        if self.cpu is None and self.memory is None and self.storage is None:
            raise ValueError("give at least one of cpu, memory, storage")
        return self
