"""API errors and validation errors as Terraform diagnostics, on the attribute they concern.

A 422's details name fields (`[{"field", "message", "type"}]`, or `{"field": ...}` for checks
the service makes itself); a field that is a Terraform attribute becomes a diagnostic with
that attribute's path, so Terraform points at the line of the configuration to fix.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from pydantic import ValidationError
from tf.utils import Diagnostics

from pgfleet.provider.client import ApiError


def field_errors(details: Any, message: str = "") -> list[tuple[str, str]]:
    """(field, message) pairs from an error's details, in either shape the API uses."""
    if isinstance(details, list):
        return [
            (str(d.get("field") or ""), str(d.get("message") or message))
            for d in details
            if isinstance(d, dict)
        ]
    if isinstance(details, dict) and details.get("field"):
        extra = "; ".join(f"{k}: {_text(v)}" for k, v in details.items() if k != "field")
        return [(str(details["field"]), f"{message} ({extra})" if extra else message)]
    return []


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def add_field_errors(
    diags: Diagnostics, errors: Iterable[tuple[str, str]], attributes: Collection[str]
) -> bool:
    """Add one diagnostic per error on a known attribute; True when at least one was added."""
    placed = False
    for field, message in errors:
        attribute = field.split(".")[0]
        if attribute in attributes:
            diags.add_error(f"Invalid value for {attribute}", message, path=[attribute])
            placed = True
    return placed


def add_api_error(diags: Diagnostics, summary: str, exc: ApiError, attributes: Collection[str]) -> None:
    """Validation errors on their attributes; anything else as one diagnostic with the
    status, code and request id an operator needs to find the request in the API's logs."""
    if add_field_errors(diags, field_errors(exc.details, exc.message), attributes):
        return
    where = f"HTTP {exc.status} {exc.code}" if exc.status else exc.code
    request = f", request {exc.request_id}" if exc.request_id else ""
    diags.add_error(summary, f"{exc.message} ({exc.method} {exc.path}: {where}{request})")


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """pydantic's errors as (field, message) pairs, the way the API reports them."""
    return [(".".join(str(p) for p in err["loc"]), err["msg"]) for err in exc.errors()]
