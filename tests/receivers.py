"""Real local receivers for notification tests: an SMTP server (aiosmtpd) and an HTTP server
(http.server in a thread), both on 127.0.0.1 and a free port, recording what they receive.

    with smtp_receiver() as smtp, http_receiver() as http:
        ... configure a channel with smtp.host/smtp.port, http.url("/slack") ...
        mail = smtp.wait_for_message()
        req = http.wait_for_request("/slack")
        assert http.signature_ok(req, secret)

Each receiver is a context manager that starts the server and stops it however the block ends.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.helpers import free_port


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- SMTP --------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None  # the user that authenticated, if any

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content() if part is not None else ""


class SmtpReceiver:
    """An SMTP server recording every accepted message. With `credentials`, it offers AUTH
    (PLAIN/LOGIN, without TLS) and refuses other logins."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.credentials = credentials
        self.messages: list[ReceivedMail] = []
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if credentials:
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False}
        self._controller = Controller(self, hostname=self.host, port=self.port, **kwargs)

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.credentials:
            user, password = self.credentials
            if auth_data.login.decode() == user and auth_data.password.decode() == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self._lock:
            self.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), parsed, login))  # type: ignore[arg-type]
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def wait_for_message(self, count: int = 1, timeout: float = 10) -> ReceivedMail:
        """The `count`-th message received (1: the first), waiting for it."""
        _wait(lambda: len(self.messages) >= count, timeout, f"{count} mail(s) on port {self.port}")
        return self.messages[count - 1]


@contextlib.contextmanager
def smtp_receiver(credentials: tuple[str, str] | None = None) -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver(credentials)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


# --- HTTP --------------------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    raw: bytes
    at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None


class HttpReceiver:
    """An HTTP server recording every request. It answers `statuses[path]` (default 200, or 202
    for paths ending in /enqueue, as PagerDuty does) with a small JSON body."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[ReceivedRequest] = []
        self.statuses: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = ReceivedRequest(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw
                )
                with receiver._lock:
                    receiver.requests.append(request)
                default = 202 if self.path.endswith("/enqueue") else 200
                status = receiver.statuses.get(self.path, default)
                body = json.dumps({"status": "success" if status < 400 else "error"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_GET = _record  # noqa: N815 (http.server's names)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests_to(self, path: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for_request(self, path: str, count: int = 1, timeout: float = 10) -> ReceivedRequest:
        """The `count`-th request to `path` (1: the first), waiting for it."""
        _wait(lambda: len(self.requests_to(path)) >= count, timeout, f"{count} request(s) to {path}")
        return self.requests_to(path)[count - 1]

    @staticmethod
    def signature_ok(request: ReceivedRequest, secret: str) -> bool:
        """Whether X-Pgfleet-Signature is the HMAC-SHA256 of the raw body keyed with `secret`."""
        expected = "sha256=" + hmac.new(secret.encode(), request.raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, request.headers.get("x-pgfleet-signature", ""))


@contextlib.contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def closed_port() -> int:
    """A port nothing listens on (free now, never bound by these receivers)."""
    return free_port()
