"""What every router needs: the caller, the ports, and typed 202 responses."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from pgfleet.core import context
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports


def principal(router: Router) -> Principal:
    """The authenticated caller (set by the api handler before routing)."""
    return router.context["principal"]  # type: ignore[no-any-return]


def ports() -> Ports:
    return context.current()


def header(router: Router, name: str) -> str | None:
    headers: dict[str, Any] = router.current_event.headers or {}
    value = headers.get(name.lower()) or headers.get(name)
    return str(value) if value else None
