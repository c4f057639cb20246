"""The local API gateway: HTTP on loopback -> API Gateway HTTP API v2 events -> api handler.

What API Gateway does in AWS, done in one process: parse the request, build the v2 event
(rawPath, rawQueryString, lowercase headers, requestContext.http, base64 bodies when not text),
invoke the handler in-process and write its response.

Connections are served by threads, but the handler runs one event at a time, as one Lambda
execution environment does: the resolver keeps the current event and its context (the caller)
on itself, so two events in it at once would read each other's.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pgfleet.core.responses import error_event_response
from pgfleet.local import websocket
from pgfleet.local.lambda_context import LocalLambdaContext

log = logging.getLogger("pgfleet.gateway")

# What the HTTP API passes to a Lambda function at most (its synchronous payload limit).
MAX_BODY_BYTES = 6 * 1024 * 1024
# The management API of the WebSocket API (pgfleet.local.websocket): pushes to connections.
CONNECTIONS = "/@connections/"
TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded", "application/xml")


def build_event(
    method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    parts = urlsplit(target)
    lowered = {k.lower(): v for k, v in headers.items()}
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    content_type = lowered.get("content-type", "")
    is_text = not body or (any(content_type.startswith(t) for t in TEXT_TYPES) and _is_utf8(body))
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "cookies": [c.strip() for c in lowered.get("cookie", "").split(";") if c.strip()] or None,
        "headers": lowered,
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": (body.decode() if is_text else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": not is_text,
    }


def _content_length(value: str | None) -> int | None:
    """The body's length in bytes (0 without the header), or None when it is not one."""
    if value is None or value.strip() == "":
        return 0
    return int(value) if value.strip().isdigit() else None


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False  # passed on base64-encoded, as bytes: the handler answers 400
    return True


# One event in the handler at a time (see the module docstring).
_INVOKE = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stalls
    server_version = "pgfleet-gateway"

    def _serve(self) -> None:
        from pgfleet.handlers.api import handle

        length = _content_length(self.headers.get("Content-Length"))
        if length is None or length > MAX_BODY_BYTES:
            # The body cannot be read (or is past Lambda's payload limit): answer, then close,
            # since the rest of the stream is no longer a request boundary.
            self.close_connection = True
            too_large = length is not None
            self._write(error_event_response(
                413 if too_large else 400, "payload_too_large" if too_large else "bad_request",
                f"the request body is larger than {MAX_BODY_BYTES} bytes" if too_large
                else "Content-Length is not a number of bytes",
            ))  # fmt: skip
            return
        body = self.rfile.read(length) if length else b""
        if self.path.startswith(CONNECTIONS):
            self._write_raw(
                *websocket.management(self.command, self.path[len(CONNECTIONS) :].split("?")[0], body)
            )
            return
        event = build_event(self.command, self.path, dict(self.headers.items()), body, self.client_address[0])
        after = None
        try:
            with _INVOKE:
                result, after = handle(event, LocalLambdaContext("pgfleet-api", timeout_seconds=30))
        except Exception:
            log.exception("api handler crashed")
            result = {"statusCode": 502, "headers": {"Content-Type": "application/json"},
                      "body": '{"error": {"code": "bad_gateway", "message": "handler crashed"}}'}  # fmt: skip
        try:
            self._write(result)
        finally:
            # The request's audit event and metrics record: stored once the client has its
            # answer, outside the one-event-at-a-time lock (in Lambda, before it returns).
            if after is not None:
                after()

    def _write_raw(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _write(self, result: dict[str, Any]) -> None:
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        self.send_response(int(result.get("statusCode", 200)))
        for key, value in (result.get("headers") or {}).items():
            if key.lower() not in ("content-length", "connection"):
                self.send_header(key, str(value))
        for key, values in (result.get("multiValueHeaders") or {}).items():
            for value in values:
                self.send_header(key, str(value))
        for cookie in result.get("cookies") or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, PROPFIND...) goes to the handler too, which answers 405 (or
        # 404) in the API's error shape, as API Gateway passes it on; not http.server's 501.
        if name.startswith("do_") and name[3:].isalpha() and name[3:].isupper():
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Access log without query strings or headers: they may carry tokens.
        path = urlsplit(self.path).path
        if path.startswith(CONNECTIONS):  # a connection id is what pushes to it: not logged
            path = CONNECTIONS + "..."
        log.info("%s %s %s", self.command, path, args[1] if len(args) > 1 else "")


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def serve(host: str, port: int, ws_port: int | None = None) -> None:
    from pgfleet.handlers import api, events  # noqa: F401  (import once, before the first request)

    if ws_port:
        websocket.start(host, ws_port)
    server = GatewayServer((host, port), _Handler)
    log.info("gateway listening on http://%s:%d", host, port)
    server.serve_forever()


def main() -> None:
    from pgfleet.core.settings import get_settings

    logging.basicConfig(
        level=os.environ.get("PGFLEET_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    settings = get_settings()
    serve("127.0.0.1", settings.api_port, settings.ws_port)


if __name__ == "__main__":
    main()
