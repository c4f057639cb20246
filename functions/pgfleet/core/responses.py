"""One JSON shape for every error: {"error": {"code", "message", "details", "request_id"}}."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Response

JSON = "application/json"


def error_payload(
    status: int, code: str, message: str, details: Any, request_id: str | None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details, "request_id": request_id}}


def error_response(
    status: int, code: str, message: str, details: Any = None, request_id: str | None = None
) -> Response:
    body = json.dumps(error_payload(status, code, message, details, request_id), default=str)
    return Response(status_code=status, content_type=JSON, body=body)


def error_event_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway v2 response, for errors raised before routing (authentication)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": JSON, **(headers or {})},
        "body": json.dumps(error_payload(status, code, message, details, request_id), default=str),
        "isBase64Encoded": False,
    }


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic's errors, trimmed to what a client needs (never the submitted values: they may
    hold secrets)."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body" or len(err.get("loc", ())) == 1]
        out.append({"field": ".".join(loc), "message": err.get("msg", ""), "type": err.get("type", "")})
    return out
