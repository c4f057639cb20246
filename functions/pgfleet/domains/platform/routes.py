"""Health and version: no authentication."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel

from pgfleet import __version__
from pgfleet.core.domain import PUBLIC, requires

router = Router()


class Health(BaseModel):
    status: str


class Version(BaseModel):
    name: str
    version: str
    api: str


@router.get("/api/health", summary="Liveness of the API")
@requires(PUBLIC)
def health() -> Health:
    return Health(status="ok")


@router.get("/api/version", summary="Version of the control plane")
@requires(PUBLIC)
def version() -> Version:
    return Version(name="pgfleet", version=__version__, api="v1")
