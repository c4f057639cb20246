"""Notification channels: records of kind `notification_channel` (no secret in them), their
secrets in Secrets Manager (`notifications/<channel id>`, one JSON object), and the test that
sends a real message now."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from pydantic import ValidationError

from pgfleet.core.auth import PLATFORM, Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import NotFound, ValidationFailed
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.core.responses import validation_details
from pgfleet.domains.notifications.models import (
    CONFIGURATIONS,
    MASK,
    SECRET_FIELDS,
    ChannelCreate,
    ChannelUpdate,
    NotificationChannel,
    Routing,
)
from pgfleet.ports.notifier import DeliveryFailed, Message

log = logging.getLogger("pgfleet.notifications")

KIND = "notification_channel"
ID_PREFIX = "nch"
ERROR_LIMIT = 500


def secret_name(channel_id: str) -> str:
    return f"notifications/{channel_id}"


# --- configuration ---------------------------------------------------------------------------


def _wire_name(channel_type: str, name: str) -> str:
    model = CONFIGURATIONS[channel_type]
    field = model.model_fields[name]
    return field.alias or name


def _snake_key(channel_type: str, key: str) -> str:
    """A configuration key in either spelling, as the model's field name (unknown keys as given)."""
    for name, field in CONFIGURATIONS[channel_type].model_fields.items():
        if key in (name, field.alias):
            return name
    return key


def validated_configuration(
    channel_type: str, given: dict[str, Any], stored_secrets: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The configuration split into (settings, secrets), both snake_case, after validation.
    A secret given masked, or left out, is the stored one. ValidationFailed (422) otherwise."""
    values = {_snake_key(channel_type, k): v for k, v in given.items()}
    for name in SECRET_FIELDS[channel_type]:
        if (name not in values or values[name] == MASK) and stored_secrets and name in stored_secrets:
            values[name] = stored_secrets[name]
        elif values.get(name) == MASK:
            raise ValidationFailed(
                f"configuration.{_wire_name(channel_type, name)}: give the secret itself, not its mask",
                details=[
                    {"field": f"configuration.{_wire_name(channel_type, name)}", "message": "masked value"}
                ],
            )
    model = CONFIGURATIONS[channel_type]
    try:
        # In the wire spelling, so that errors name the fields as clients send them.
        wire = {(_wire_name(channel_type, k) if k in model.model_fields else k): v for k, v in values.items()}
        parsed = model.model_validate(wire)
    except ValidationError as exc:
        errors = [{**e, "loc": ("configuration", *e.get("loc", ()))} for e in exc.errors()]
        details = validation_details(errors)
        raise ValidationFailed(
            f"the {channel_type} configuration is not valid: "
            + "; ".join(f"{d['field']}: {d['message']}" for d in details[:5]),
            details=details,
        ) from None
    # What was given only: defaults stay the senders' (and a Terraform plan sees no value it
    # did not set).
    record = parsed.model_dump(mode="json", by_alias=False, exclude_none=True, exclude_unset=True)
    secrets = {name: str(record.pop(name)) for name in SECRET_FIELDS[channel_type] if name in record}
    return record, secrets


def _check_provider(ports: Ports, channel_type: str, configuration: dict[str, Any]) -> None:
    # SES only in AWS: locally there is no mail to see in moto, and SMTP is what tests receive.
    if channel_type == "EMAIL" and configuration.get("provider") == "ses" and ports.settings.aws_endpoint_url:
        raise ValidationFailed(
            "configuration.provider: ses is available only in AWS; use smtp locally",
            details=[{"field": "configuration.provider", "message": "ses needs AWS"}],
        )


def public_configuration(record: dict[str, Any]) -> dict[str, Any]:
    """The configuration as answers show it: camelCase, every secret the channel holds masked."""
    channel_type = record["type"]
    shown = {_wire_name(channel_type, k): v for k, v in (record.get("configuration") or {}).items()}
    for name in record.get("secret_fields") or ():
        shown[_wire_name(channel_type, name)] = MASK
    return shown


def view(record: dict[str, Any]) -> NotificationChannel:
    return NotificationChannel.model_validate(
        {
            **record,
            "channel_id": record["id"],
            "configuration": public_configuration(record),
            "routing": record.get("routing") or Routing().to_record(),
        }
    )


def secrets_of(ports: Ports, record: dict[str, Any]) -> dict[str, str]:
    if not record.get("secret_fields"):
        return {}
    raw = ports.secrets.get(secret_name(record["id"]))
    return json.loads(raw) if raw else {}


def full_configuration(ports: Ports, record: dict[str, Any]) -> dict[str, Any]:
    """What a sender needs: the settings and the secrets (never to be shown or logged)."""
    return {**(record.get("configuration") or {}), **secrets_of(ports, record)}


# --- records ---------------------------------------------------------------------------------


def _scan(ports: Ports, tenant_id: str | None) -> list[dict[str, Any]]:
    return ports.store.every(KIND, tenant_id=tenant_id)


def list_channels(ports: Ports, caller: Principal, tenant_id: str | None) -> list[dict[str, Any]]:
    return _scan(ports, tenant_scope(caller, tenant_id))


def channels_for_tenant(ports: Ports, tenant_id: str) -> list[dict[str, Any]]:
    """The channels an alert of `tenant_id` may go to: the tenant's and the platform's."""
    found = _scan(ports, PLATFORM)
    if tenant_id and tenant_id != PLATFORM:
        found += _scan(ports, tenant_id)
    return found


def get_channel(ports: Ports, caller: Principal, channel_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, channel_id)
    if record is None or not caller.sees_tenant(record["tenant_id"]):
        raise NotFound(f"notification channel {channel_id} not found")
    return record


def _store_secrets(ports: Ports, channel_id: str, secrets: dict[str, str], had_secrets: bool = False) -> None:
    if secrets:
        ports.secrets.put(secret_name(channel_id), json.dumps(secrets))
    elif had_secrets:
        ports.secrets.delete(secret_name(channel_id))


def _idempotency_claim(tenant: str, key: str) -> str:
    return f"idempotency#{KIND}#{tenant}#{key}"


def _fingerprint(body: ChannelCreate, secrets: dict[str, str]) -> str:
    # Of the request with its secrets' own digests (the claim must not hold a secret).
    shown = body.model_dump(mode="json")
    shown["configuration"] = {
        **shown["configuration"],
        **{f"secret:{k}": hashlib.sha256(v.encode()).hexdigest() for k, v in secrets.items()},
    }
    for name in SECRET_FIELDS[body.type]:
        for key in (name, _wire_name(body.type, name)):
            shown["configuration"].pop(key, None)
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()


def create_channel(
    ports: Ports, caller: Principal, body: ChannelCreate, idempotency_key: str | None = None
) -> dict[str, Any]:
    """Create a channel. With an Idempotency-Key, a repeated request answers the channel the
    first one made (the same key with another body: 422)."""
    tenant = tenant_scope(caller, body.tenant_id) or PLATFORM
    configuration, secrets = validated_configuration(body.type, body.configuration)
    _check_provider(ports, body.type, configuration)
    fingerprint = _fingerprint(body, secrets)
    if idempotency_key:
        claim = ports.store.claimed(_idempotency_claim(tenant, idempotency_key))
        if claim is not None:
            if (claim.get("value") or {}).get("fingerprint") != fingerprint:
                raise ValidationFailed(
                    "Idempotency-Key was already used with a different request body",
                    details={"header": "Idempotency-Key"},
                )
            earlier = ports.store.get(KIND, claim["owner"])
            if earlier is not None:
                return earlier
    now = utcnow_iso()
    channel_id = new_id(ID_PREFIX)
    record = {
        "id": channel_id,
        "tenant_id": tenant,
        "type": body.type,
        "name": body.name,
        "configuration": configuration,
        "secret_fields": sorted(secrets),
        "is_enabled": body.is_enabled,
        "routing": body.routing.to_record(),
        "test_status": "PENDING",
        "last_test_at": None,
        "last_test_error": None,
        "created_by": caller.sub or None,
        "created_at": now,
        "updated_at": now,
    }
    # The secret first: a record never points at a secret that was not stored.
    _store_secrets(ports, channel_id, secrets)
    try:
        stored = ports.store.create(KIND, record)
    except Exception:
        if secrets:
            ports.secrets.delete(secret_name(channel_id))
        raise
    if idempotency_key:
        ports.store.claim(
            _idempotency_claim(tenant, idempotency_key), channel_id, {"fingerprint": fingerprint}
        )
    log.info("notification channel %s (%s) created for tenant %s", channel_id, body.type, tenant)
    return stored


def update_channel(ports: Ports, caller: Principal, channel_id: str, body: ChannelUpdate) -> dict[str, Any]:
    record = get_channel(ports, caller, channel_id)
    if body.type is not None and body.type != record["type"]:
        raise ValidationFailed(
            f"type cannot change ({record['type']}): create another channel",
            details=[{"field": "type", "message": "cannot change"}],
        )
    changes: dict[str, Any] = {}
    if body.configuration is not None:
        configuration, secrets = validated_configuration(
            record["type"], body.configuration, secrets_of(ports, record)
        )
        _check_provider(ports, record["type"], configuration)
        changes |= {"configuration": configuration, "secret_fields": sorted(secrets)}
        # A changed configuration has not been tested yet.
        if configuration != record.get("configuration") or secrets != secrets_of(ports, record):
            changes |= {"test_status": "PENDING", "last_test_error": None}
        _store_secrets(ports, channel_id, secrets, had_secrets=bool(record.get("secret_fields")))
    if body.name is not None:
        changes["name"] = body.name
    if body.is_enabled is not None:
        changes["is_enabled"] = body.is_enabled
    if body.routing is not None:
        changes["routing"] = body.routing.to_record()
    if not changes:
        return record
    changes["updated_at"] = utcnow_iso()
    return ports.store.update(KIND, channel_id, changes)


def delete_channel(ports: Ports, caller: Principal, channel_id: str) -> None:
    record = get_channel(ports, caller, channel_id)
    ports.store.delete(KIND, record["id"])
    if record.get("secret_fields"):
        ports.secrets.delete(secret_name(record["id"]))
    log.info("notification channel %s deleted", channel_id)


# --- the test --------------------------------------------------------------------------------


def test_message(record: dict[str, Any], text: str | None) -> Message:
    return Message(
        title=f"pgfleet test: {record['name']}",
        text=text or f"A test of the {record['type']} channel {record['name']} ({record['id']}).",
        severity="LOW",
        event="test",
        alert={"channel_id": record["id"], "tenant_id": record["tenant_id"], "category": "TEST"},
    )


def short_error(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, DeliveryFailed) else f"{type(exc).__name__}: {exc}"
    return text[:ERROR_LIMIT]


def test_channel(ports: Ports, caller: Principal, channel_id: str, text: str | None) -> dict[str, Any]:
    """Send a real test message now; the channel's testStatus says how it went."""
    record = get_channel(ports, caller, channel_id)
    error, result = None, None
    try:
        result = ports.notifier.send(
            record["type"], full_configuration(ports, record), test_message(record, text)
        )
    except Exception as exc:  # any failure of the channel is the test's outcome, not a 500
        error = short_error(exc)
        log.warning("test of notification channel %s failed: %s", channel_id, error)
    return ports.store.update(
        KIND,
        channel_id,
        {
            "test_status": "FAILED" if error else "PASSED",
            "last_test_at": utcnow_iso(),
            "last_test_error": error,
            "last_test_result": result,
        },
    )
