"""A small client of the pgfleet API: JSON over urllib with a bearer token (no dependencies,
so the provider starts fast), the API's one error shape, and waiting for operations."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from pgfleet.provider import VERSION

# Requests that may be sent twice without doing the work twice are retried on connection
# errors and gateway hiccups; a POST qualifies once it carries an Idempotency-Key.
RETRY_DELAYS = (0.3, 1.0, 2.0)
RETRY_STATUSES = (502, 503, 504)
FAST_POLL_SECONDS = 0.1
FAST_POLL_FOR_SECONDS = 5.0
MAX_POLL_SECONDS = 2.0


class ApiError(Exception):
    """An error answer: `{"error": {"code", "message", "details", "request_id"}}`."""

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{method} {path}: {status} {code}: {message}")
        self.method = method
        self.path = path
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id

    @classmethod
    def from_body(cls, method: str, path: str, status: int, raw: bytes) -> ApiError:
        try:
            error = json.loads(raw).get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        if not isinstance(error, dict):
            error = {}
        return cls(
            method,
            path,
            status,
            str(error.get("code") or f"http_{status}"),
            str(error.get("message") or raw[:300].decode(errors="replace") or "no message"),
            error.get("details"),
            error.get("request_id"),
        )


class OperationFailed(Exception):
    def __init__(self, operation: dict[str, Any]) -> None:
        failed = [s for s in operation.get("steps", []) if s.get("status") == "failed"]
        where = f" at step {failed[0]['name']}" if failed else ""
        super().__init__(
            f"operation {operation['id']} failed{where}: {operation.get('error') or 'no reason given'}"
        )
        self.operation = operation


class OperationTimeout(Exception):
    pass


@dataclass
class ApiClient:
    endpoint: str
    token: str | None
    request_timeout: float = 60

    def request(self, method: str, path: str, body: Any = None, idempotency_key: str | None = None) -> Any:
        """Send one request and return its JSON body; raise ApiError for an error answer."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": f"terraform-provider-pgfleet/{VERSION}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        retryable = method in ("GET", "PUT", "DELETE") or idempotency_key is not None
        url = self.endpoint.rstrip("/") + path
        for delay in (*RETRY_DELAYS, None):
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.request_timeout) as resp:  # noqa: S310
                    raw = resp.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as err:
                if retryable and delay is not None and err.code in RETRY_STATUSES:
                    time.sleep(delay)
                    continue
                raise ApiError.from_body(method, path, err.code, err.read()) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                if retryable and delay is not None:
                    time.sleep(delay)
                    continue
                reason = getattr(err, "reason", err)
                raise ApiError(method, path, 0, "unreachable", f"cannot reach {url}: {reason}") from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def create(self, path: str, body: Any) -> Any:
        """POST a create request with a fresh Idempotency-Key, so a retry never creates twice."""
        return self.request("POST", path, body, idempotency_key=str(uuid.uuid4()))

    def wait_operation(self, operation_id: str, timeout: float) -> dict[str, Any]:
        """Poll GET /api/v1/operations/{id} until it succeeds; raise OperationFailed or
        OperationTimeout. Polls every 0.1 s at first (a local create takes about two seconds,
        and every poll interval of slack is added to `terraform apply`), then backs off."""
        started = time.monotonic()
        deadline = started + timeout
        interval = FAST_POLL_SECONDS
        while True:
            operation: dict[str, Any] = self.request("GET", f"/api/v1/operations/{operation_id}")
            if operation.get("status") == "succeeded":
                return operation
            if operation.get("status") == "failed":
                raise OperationFailed(operation)
            if time.monotonic() + interval > deadline:
                raise OperationTimeout(
                    f"operation {operation_id} is still {operation.get('status')} after {timeout:.0f}s"
                    f" ({operation.get('progress', 0)}%); see GET /api/v1/operations/{operation_id}"
                )
            time.sleep(interval)
            if time.monotonic() - started > FAST_POLL_FOR_SECONDS:
                interval = min(interval * 1.5, MAX_POLL_SECONDS)
