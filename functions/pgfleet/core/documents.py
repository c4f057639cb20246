"""A generated document (a report as JSON, CSV or PDF) and how it is sent as an attachment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Report:
    body: bytes
    content_type: str
    filename: str

    @property
    def content_disposition(self) -> str:
        return f'attachment; filename="{self.filename}"'
