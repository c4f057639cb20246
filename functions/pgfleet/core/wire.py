"""The production-readiness API's wire spelling: snake_case in Python and in storage,
camelCase on the wire (seed 003 writes `backupId`, `pageSize`, ...)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A model whose attributes are snake_case and whose wire names are camelCase.

    Parsing accepts either spelling (`populate_by_name`), serialization and the OpenAPI
    schema use the camelCase alias. Build one from a stored (snake_case) record with
    `Model.model_validate(record)`; records keep no wire spelling."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
    )

    def to_record(self) -> dict[str, Any]:
        """The model as stored: snake_case, JSON-compatible (`model_dump` gives the wire
        spelling)."""
        return self.model_dump(mode="json", by_alias=False)


class StrictCamelModel(CamelModel):
    """Request bodies in camelCase: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")
