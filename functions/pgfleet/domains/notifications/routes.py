"""/api/v1/monitoring/notifications: notification channels and their test (seed 003, phase 2,
"Notification Management"). A channel belongs to the caller's tenant; a platform admin may
create one for any tenant, or for `*` (every tenant's alerts). Another tenant's channel is 404."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core.domain import requires
from pgfleet.core.routing import header, ports, principal
from pgfleet.domains.notifications import service
from pgfleet.domains.notifications.models import (
    CHANNEL_ID_PATTERN,
    ChannelCreate,
    ChannelDeleted,
    ChannelUpdate,
    NotificationChannel,
    NotificationChannelsResponse,
    NotificationTestRequest,
)

router = Router()

CHANNELS = "/notifications/channels"
ChannelId = Annotated[str, Path(pattern=CHANNEL_ID_PATTERN, description="`nch-...`")]
TenantId = Annotated[
    str | None, Query(alias="tenantId", min_length=1, max_length=64, description="A platform admin's filter.")
]


@router.get(CHANNELS, summary="The notification channels in scope (secrets masked)")
@requires("notifications:read")
def list_channels(tenant_id: TenantId = None) -> NotificationChannelsResponse:
    records = service.list_channels(ports(), principal(router), tenant_id)
    records.sort(key=lambda r: (r.get("created_at", ""), r["id"]))
    return NotificationChannelsResponse(channels=[service.view(r) for r in records])


@router.post(CHANNELS, summary="Create a notification channel", status_code=201)
@requires("notifications:create")
def create_channel(body: ChannelCreate) -> NotificationChannel:
    created = service.create_channel(ports(), principal(router), body, header(router, "Idempotency-Key"))
    return service.view(created)


@router.get(f"{CHANNELS}/<channel_id>", summary="One notification channel (secrets masked)")
@requires("notifications:read")
def get_channel(channel_id: ChannelId) -> NotificationChannel:
    return service.view(service.get_channel(ports(), principal(router), channel_id))


@router.put(
    f"{CHANNELS}/<channel_id>",
    summary="Change a notification channel; a secret sent back masked (or left out) is kept",
)
@requires("notifications:update")
def update_channel(channel_id: ChannelId, body: ChannelUpdate) -> NotificationChannel:
    return service.view(service.update_channel(ports(), principal(router), channel_id, body))


@router.delete(f"{CHANNELS}/<channel_id>", summary="Delete a notification channel and its secrets")
@requires("notifications:delete")
def delete_channel(channel_id: ChannelId) -> ChannelDeleted:
    service.delete_channel(ports(), principal(router), channel_id)
    return ChannelDeleted(channel_id=channel_id)


@router.post(
    "/notifications/test", summary="Send a real test message through a channel now; answers its testStatus"
)
@requires("notifications:test")
def test_channel(body: NotificationTestRequest) -> NotificationChannel:
    return service.view(service.test_channel(ports(), principal(router), body.channel_id, body.test_message))
