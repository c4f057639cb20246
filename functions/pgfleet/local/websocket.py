"""The local WebSocket API: what API Gateway's WebSocket API does in AWS, in the gateway's
process, on its second port (PGFLEET_WS_PORT).

- An upgrade is the `$connect` route: the events handler (pgfleet.handlers.events) is invoked
  with the v2 WebSocket event before the handshake completes, and its status decides (200
  opens the connection; 401/403/422 refuse it with the handler's JSON body).
- Each text message is the `$default` route; the handler's body goes back on the connection.
- A close is the `$disconnect` route.
- The management API that pushes to a connection, `POST/GET/DELETE /@connections/{id}`, is
  served on the gateway's HTTP port (pgfleet.local.gateway), as the WebSocket API's own domain
  serves it in AWS. Connection ids are 128 random bits, known only to the store and this
  process: there, they are what IAM is in AWS, so they are never logged.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from pgfleet.local.lambda_context import LocalLambdaContext

log = logging.getLogger("pgfleet.websocket")

_connections: dict[str, ServerConnection] = {}
_lock = threading.Lock()


def _event(
    route: str, connection_id: str, request: Request | None, body: str | None = None
) -> dict[str, Any]:
    from urllib.parse import parse_qsl, urlsplit

    now = time.time()
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    if request is not None:
        query = dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
    kind = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
    return {
        "requestContext": {
            "routeKey": route, "eventType": kind, "connectionId": connection_id, "apiId": "local",
            "stage": "local", "domainName": "127.0.0.1", "requestId": str(uuid.uuid4()),
            "connectedAt": int(now * 1000), "requestTimeEpoch": int(now * 1000),
        },
        "headers": headers or None, "queryStringParameters": query or None,
        "body": body, "isBase64Encoded": False,
    }  # fmt: skip


def _invoke(event: dict[str, Any]) -> dict[str, Any]:
    from pgfleet.handlers.events import lambda_handler

    try:
        return lambda_handler(event, LocalLambdaContext("pgfleet-events", timeout_seconds=30))
    except Exception:
        log.exception("events handler crashed on %s", event["requestContext"]["routeKey"])
        return {"statusCode": 502, "body": '{"error": {"code": "bad_gateway", "message": "handler crashed"}}'}


def _process_request(connection: ServerConnection, request: Request) -> Response | None:
    connection_id = secrets.token_urlsafe(16)
    result = _invoke(_event("$connect", connection_id, request))
    status = int(result.get("statusCode", 500))
    if status != 200:
        response = connection.respond(status, result.get("body") or "")
        response.headers["Content-Type"] = "application/json"
        return response
    connection.connection_id = connection_id  # type: ignore[attr-defined]
    return None


def _serve(connection: ServerConnection) -> None:
    connection_id: str = connection.connection_id  # type: ignore[attr-defined]
    with _lock:
        _connections[connection_id] = connection
    try:
        for message in connection:
            text = message if isinstance(message, str) else message.decode(errors="replace")
            answer = _invoke(_event("$default", connection_id, None, text))
            if answer.get("body"):
                connection.send(answer["body"])
    except ConnectionClosed:
        pass
    finally:
        with _lock:
            _connections.pop(connection_id, None)
        _invoke(_event("$disconnect", connection_id, None))


def post(connection_id: str, data: bytes) -> bool:
    """Send one text frame; False when the connection is gone (410 in AWS)."""
    with _lock:
        connection = _connections.get(connection_id)
    if connection is None:
        return False
    try:
        connection.send(data.decode())
    except ConnectionClosed:
        return False
    return True


def close(connection_id: str) -> bool:
    with _lock:
        connection = _connections.get(connection_id)
    if connection is None:
        return False
    connection.close(code=1008, reason="token expired")
    return True


def describe(connection_id: str) -> dict[str, Any] | None:
    with _lock:
        connection = _connections.get(connection_id)
    if connection is None:
        return None
    host, port = connection.remote_address[:2]
    return {"identity": {"sourceIp": host}, "connectedAt": None, "port": port}


def management(method: str, connection_id: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """`/@connections/{id}` of the management API: (status, headers, body), in the error shape
    botocore reads (x-amzn-ErrorType)."""
    gone = (410, {"x-amzn-ErrorType": "GoneException", "Content-Type": "application/json"},
            json.dumps({"message": "the connection is gone"}).encode())  # fmt: skip
    if method == "POST":
        return (200, {}, b"") if post(connection_id, body) else gone
    if method == "DELETE":
        return (204, {}, b"") if close(connection_id) else gone
    if method == "GET":
        found = describe(connection_id)
        return (200, {"Content-Type": "application/json"}, json.dumps(found).encode()) if found else gone
    return (
        405,
        {"Content-Type": "application/json"},
        json.dumps({"message": f"{method} is not allowed"}).encode(),
    )


def start(host: str, port: int) -> Server:
    """Serve the WebSocket API in a daemon thread; the server, to shut down."""
    server = serve(_serve, host, port, process_request=_process_request, ping_interval=30, compression=None)
    threading.Thread(target=server.serve_forever, name="websocket", daemon=True).start()
    log.info("websocket API listening on ws://%s:%d", host, port)
    return server
