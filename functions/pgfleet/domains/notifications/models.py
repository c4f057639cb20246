"""The wire shapes of notification channels (seed 003, "Notification Management"), camelCase
on the wire, and the configuration each channel type takes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, HttpUrl, TypeAdapter, field_validator, model_validator

from pgfleet.core.wire import CamelModel, StrictCamelModel

ChannelType = Literal["EMAIL", "SLACK", "SMS", "WEBHOOK", "PAGERDUTY"]
TestStatus = Literal["PASSED", "FAILED", "PENDING"]
Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
Event = Literal["triggered", "resolved"]
SEVERITIES: tuple[Severity, ...] = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
EVENTS: tuple[Event, ...] = ("triggered", "resolved")
CHANNEL_ID_PATTERN = r"^nch-[0-9a-f]{12}$"
EMAIL_PATTERN = r"^[^@\s<>,;\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
# How a secret of a configuration is shown: never any of its characters.
MASK = "********"

EmailAddress = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=254)]
Secret = Annotated[str, Field(min_length=1, max_length=2048)]
_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _http_url(value: str) -> str:
    # Validated as an http(s) URL, kept as written (no added slash: Terraform compares values).
    _HTTP_URL.validate_python(value)
    return value


Url = Annotated[str, Field(max_length=2048), AfterValidator(_http_url)]
Hostname = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:\[\]-]+$")]


class EmailConfiguration(StrictCamelModel):
    """EMAIL: an SMTP server (`provider: smtp`), or Amazon SES in AWS (`provider: ses`)."""

    provider: Literal["smtp", "ses"] = "smtp"
    host: Hostname | None = Field(default=None, description="SMTP server; required with provider smtp.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Default 25 (465 with tls ssl).")
    tls: Literal["none", "starttls", "ssl"] = Field(
        default="none", description="How to secure the connection."
    )
    username: str | None = Field(default=None, min_length=1, max_length=256)
    password: Secret | None = Field(
        default=None, description="Secret: stored in Secrets Manager, shown masked."
    )
    from_address: EmailAddress = Field(alias="from", description="The sender's address.")
    to: list[EmailAddress] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _smtp_needs_host(self) -> EmailConfiguration:
        if self.provider == "smtp" and not self.host:
            raise ValueError("host is required with provider smtp")
        if self.password and not self.username:
            raise ValueError("a password needs a username")
        return self


class SlackConfiguration(StrictCamelModel):
    webhook_url: Url = Field(description="Incoming webhook URL. Secret: shown masked.")


class WebhookConfiguration(StrictCamelModel):
    url: Url
    secret: Annotated[str, Field(min_length=16, max_length=256)] = Field(
        description="Key of the HMAC-SHA256 signature (X-Pgfleet-Signature). Secret: shown masked."
    )
    headers: dict[str, Annotated[str, Field(max_length=1024)]] | None = Field(default=None, max_length=20)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name in value or {}:
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if name.lower() in (
                "content-type",
                "content-length",
                "host",
                "x-pgfleet-signature",
                "x-pgfleet-timestamp",
                "x-pgfleet-delivery",
            ):
                raise ValueError(f"header {name} is set by pgfleet")
        return value


class PagerDutyConfiguration(StrictCamelModel):
    routing_key: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")] = Field(
        description="Integration (routing) key of an Events API v2 service. Secret: shown masked."
    )
    events_url: Url = Field(
        default="https://events.pagerduty.com/v2/enqueue", description="Events API v2 endpoint."
    )


class SmsConfiguration(StrictCamelModel):
    phone_number: Annotated[str, Field(pattern=E164_PATTERN)] = Field(description="E.164, e.g. +14155550100.")


CONFIGURATIONS: dict[str, type[StrictCamelModel]] = {
    "EMAIL": EmailConfiguration,
    "SLACK": SlackConfiguration,
    "WEBHOOK": WebhookConfiguration,
    "PAGERDUTY": PagerDutyConfiguration,
    "SMS": SmsConfiguration,
}
# Configuration fields kept in Secrets Manager, never in the record nor in an answer.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "EMAIL": ("password",),
    "SLACK": ("webhook_url",),
    "WEBHOOK": ("secret",),
    "PAGERDUTY": ("routing_key",),
    "SMS": (),
}


class Routing(StrictCamelModel):
    """Which alerts a channel receives: their severities and events (default: all)."""

    severities: list[Severity] = Field(
        default=list(SEVERITIES), min_length=1, max_length=4,
        description="Alert severities it receives: LOW, MEDIUM, HIGH, CRITICAL (default all).",
    )  # fmt: skip
    events: list[Event] = Field(
        default=list(EVENTS), min_length=1, max_length=2,
        description="Alert events it receives: triggered, resolved (default both).",
    )  # fmt: skip


ChannelName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")]


class ChannelCreate(StrictCamelModel):
    type: ChannelType
    name: ChannelName
    configuration: dict[str, Any] = Field(
        description="The settings of the channel's type; secrets are shown masked."
    )
    is_enabled: bool = True
    routing: Routing = Field(default_factory=Routing)
    tenant_id: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="A platform admin's choice of tenant; `*`: every tenant's alerts."
    )


class ChannelUpdate(StrictCamelModel):
    """What a PUT changes; absent fields keep their value. In `configuration`, a secret sent back
    masked (or left out) keeps the stored one."""

    type: ChannelType | None = Field(
        default=None, description="Cannot change; if given, must be the channel's."
    )
    name: ChannelName | None = None
    configuration: dict[str, Any] | None = None
    is_enabled: bool | None = None
    routing: Routing | None = None


class NotificationTestRequest(StrictCamelModel):
    channel_id: Annotated[str, Field(pattern=CHANNEL_ID_PATTERN)]
    test_message: Annotated[str, Field(min_length=1, max_length=1000)] | None = None


class NotificationChannel(CamelModel):
    channel_id: str
    tenant_id: str
    type: ChannelType
    name: str
    configuration: dict[str, Any]
    is_enabled: bool
    test_status: TestStatus
    routing: Routing
    created_at: str
    updated_at: str
    last_test_at: str | None = None
    last_test_error: str | None = None
    last_test_result: str | None = None


class NotificationChannelsResponse(CamelModel):
    channels: list[NotificationChannel]


class ChannelDeleted(CamelModel):
    channel_id: str
    deleted: bool = True
