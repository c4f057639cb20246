"""/api/v1/postgres/migrate: migrate a single instance into an HA cluster."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from pgfleet.core.domain import requires
from pgfleet.core.routing import ports, principal
from pgfleet.domains.migrations import service as migrations
from pgfleet.domains.migrations.models import Migration, MigrationCreate, MigrationCreated

router = Router()

MigrationId = Annotated[str, Path(pattern=r"^mig-[0-9a-f]{12}$", description="Migration id.")]


@router.post("/", summary="Migrate a single instance into an HA cluster", status_code=202)
@requires("postgres:write")
def create_migration(body: MigrationCreate) -> MigrationCreated:
    return MigrationCreated.model_validate(migrations.create(ports(), principal(router), body))


@router.get("/<migration_id>", summary="A migration: its phase, lag and steps")
@requires("postgres:read")
def get_migration(migration_id: MigrationId) -> Migration:
    record = migrations.get_visible(ports(), principal(router), migration_id)
    return Migration.model_validate(migrations.view(ports(), record))


@router.post("/<migration_id>/cutover", summary="Cut a ready migration over to its cluster", status_code=202)
@requires("postgres:write")
def cutover_migration(migration_id: MigrationId) -> Migration:
    return Migration.model_validate(migrations.cutover(ports(), principal(router), migration_id))
