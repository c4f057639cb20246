"""A small threaded WSGI server with HTTP/1.1 keep-alive, for the local AWS endpoint.

Werkzeug's development server closes every connection after one response, so each boto3
call paid for a TCP handshake and a new server thread. Clients of the local stack make many
small calls (every API request reads DynamoDB), so connections are kept open here. Bodies are
buffered: requests and responses of these APIs are small.
"""

from __future__ import annotations

import io
import logging
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from moto.core.request import PRESERVED_HEADER_NAMES_ENVIRON_KEY

log = logging.getLogger(__name__)

WSGIApp = Any


def _environ(handler: BaseHTTPRequestHandler, body: bytes) -> dict[str, Any]:
    parts = urlsplit(handler.path)
    host, port = handler.server.server_address[:2]  # type: ignore[index, misc, str-unpack]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": handler.command,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(parts.path, encoding="latin-1"),
        "QUERY_STRING": parts.query,
        "RAW_URI": handler.path,
        "REQUEST_URI": handler.path,
        "SERVER_NAME": str(host),
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": handler.request_version,
        "REMOTE_ADDR": handler.client_address[0],
        "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        # moto's own handler records header names with underscores here; ours has none.
        PRESERVED_HEADER_NAMES_ENVIRON_KEY: {},
    }
    for name, value in handler.headers.items():
        if "_" in name:  # WSGI cannot tell X_Foo from X-Foo: drop, as werkzeug does
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            continue
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def make_handler(app: WSGIApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stalls

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status_line: list[str] = []
            headers: list[tuple[str, str]] = []

            def start_response(
                status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Any:
                status_line[:] = [status]
                headers[:] = response_headers
                return lambda data: chunks.append(data)

            chunks: list[bytes] = []
            result = app(_environ(self, body), start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close:
                    close()
            data = b"".join(chunks)
            code, _, reason = status_line[0].partition(" ")
            self.send_response(int(code), reason)
            for name, value in headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # request lines would only repeat what the journal and the callers log

    return Handler


class KeepAliveWSGIServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def serve(app: WSGIApp, host: str, port: int) -> None:
    server = KeepAliveWSGIServer((host, port), make_handler(app))
    try:
        server.serve_forever()
    finally:
        server.server_close()
