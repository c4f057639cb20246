"""The events Lambda: the routes of the WebSocket API (API Gateway WebSocket in AWS, the local
gateway's WebSocket port here).

- `$connect`: the same JWT as the HTTP API, as `Authorization: Bearer` or, for browsers that
  cannot set headers on a WebSocket, the `token` query parameter; `events` (comma-separated)
  narrows what the connection receives. A refused connect answers 401, 403 or 422 and the
  connection is not opened.
- `$disconnect`: the subscription is forgotten.
- `$default`: `{"action": "ping"}` or `{"action": "subscribe", "events": [...]}`; the answer
  goes back on the connection (a two-way route).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pgfleet.core import auth
from pgfleet.core.context import provide
from pgfleet.core.errors import ServiceError, Unauthorized
from pgfleet.core.responses import error_event_response
from pgfleet.domains import events
from pgfleet.wiring import cold_start, dependencies

log = logging.getLogger("pgfleet.events")

provide(dependencies)
cold_start()


def _connect(event: dict[str, Any], connection_id: str) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    query = event.get("queryStringParameters") or {}
    try:
        if "authorization" in headers:
            token = auth.bearer_token(headers)
        elif query.get("token"):
            token = query["token"]
        else:
            raise Unauthorized(
                "missing token: send 'Authorization: Bearer <JWT>' or ?token=<JWT> with the upgrade"
            )
        claims = auth.verifier().verify(token)
        caller = auth.principal_from_claims(claims)
        record = events.connect(
            dependencies(), caller, connection_id, query.get("events"), float(claims["exp"])
        )
    except ServiceError as exc:
        return error_event_response(exc.status, exc.code, exc.message, exc.details)
    log.info("connected: tenant %s, %d event type(s)", record["tenant_id"], len(record["events"]))
    return {"statusCode": 200}


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = event.get("requestContext") or {}
    route = request.get("routeKey")
    connection_id = str(request.get("connectionId") or "")
    if not connection_id:
        return {"statusCode": 400, "body": "no connection"}
    if route == "$connect":
        return _connect(event, connection_id)
    if route == "$disconnect":
        events.disconnect(dependencies(), connection_id)
        return {"statusCode": 200}
    answer = events.message(dependencies(), connection_id, event.get("body"))
    return {"statusCode": 200, "body": json.dumps(answer)}
