"""What every request must be before a route sees it: a body that is JSON, UTF-8 text, and
headers of bounded size. Each check answers 4xx in the one error shape, never 500.

A body without a Content-Type, or with curl's default for -d (form-urlencoded), is read as
JSON when it parses as JSON: that is what every route takes, and a newcomer's first curl
should not be answered with 'Field required' for fields it did send.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pgfleet.core.errors import BadRequest, UnsupportedMediaType, ValidationFailed

JSON = "application/json"
# Media types a client may send JSON under without saying so: none at all, and curl's
# default for -d.
UNDECLARED = ("", "application/x-www-form-urlencoded")
IDEMPOTENCY_KEY = "idempotency-key"
IDEMPOTENCY_KEY_MAX = 255
_NEEDS_JSON = "send the body as JSON, with the header 'Content-Type: application/json'"


def media_type(headers: dict[str, Any]) -> str:
    value = headers.get("content-type") or headers.get("Content-Type") or ""
    return str(value).split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def body_text(event: dict[str, Any]) -> str | None:
    """The request body as text; 400 when it is not UTF-8 (or not base64 when it says so)."""
    body = event.get("body")
    if body is None or body == "":
        return None
    if not event.get("isBase64Encoded"):
        return str(body)
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("the request body is marked base64 but is not base64") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the request body is not UTF-8 text (byte {exc.start}); {_NEEDS_JSON}",
            details={"position": exc.start},
        ) from None


def json_body(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its body as JSON text the resolver reads as JSON, or 400/415."""
    text = body_text(event)
    if text is None:
        return event
    headers = event.get("headers") or {}
    media = media_type(headers)
    if not is_json(media):
        if media not in UNDECLARED:
            raise UnsupportedMediaType(
                f"Content-Type {media} is not accepted: {_NEEDS_JSON}", details={"content_type": media}
            )
        try:
            json.loads(text)
        except ValueError:
            raise UnsupportedMediaType(
                f"the body is not JSON{f' (Content-Type {media})' if media else ''}: {_NEEDS_JSON}",
                details={"content_type": media or None},
            ) from None
    # The resolver reads only application/json as JSON (not +json types, nor none declared).
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"} | {"content-type": JSON}
    return {**event, "headers": headers, "body": text, "isBase64Encoded": False}


def check_headers(headers: dict[str, Any]) -> None:
    """Headers a route reads by hand: the Idempotency-Key of creates (a key of the metadata
    store, which bounds its size)."""
    key = headers.get(IDEMPOTENCY_KEY) or headers.get("Idempotency-Key")
    if key is None:
        return
    problem = None
    if len(key) > IDEMPOTENCY_KEY_MAX:
        problem = f"at most {IDEMPOTENCY_KEY_MAX} characters ({len(key)} sent)"
    elif not key.strip() or not all(" " <= c <= "~" for c in key):
        problem = "printable ASCII characters, not blank"
    if problem:
        raise ValidationFailed(
            f"Idempotency-Key must be {problem}",
            details=[{"field": "header.Idempotency-Key", "message": problem, "type": "invalid_header"}],
        )
