"""JSON over HTTP POST for the webhook-like channels, with a short timeout. Error messages
never carry the URL: for Slack and PagerDuty the URL or body holds the secret."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from pgfleet.ports.notifier import DeliveryFailed

TIMEOUT_SECONDS = 10
USER_AGENT = "pgfleet-notifications/1"


def raw_json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    """POST `body` (JSON) to `url`; the status of a 2xx answer. DeliveryFailed otherwise."""
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 (http(s) only, validated)
    for name, value in {
        **(headers or {}),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        answer = exc.read(300).decode("utf-8", "replace").strip()
        raise DeliveryFailed(f"HTTP {exc.code} {exc.reason}" + (f": {answer}" if answer else "")) from None
    except urllib.error.URLError as exc:
        raise DeliveryFailed(f"could not connect: {_reason(exc.reason)}") from None
    except (TimeoutError, OSError) as exc:
        raise DeliveryFailed(f"could not connect: {_reason(exc)}") from None


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if isinstance(reason, TimeoutError):
        return f"timed out after {TIMEOUT_SECONDS} s"
    return str(reason) or type(reason).__name__
