"""The audit trail (seed 003, "Audit Trail APIs"): one event per API call, success or failure
(401s and 403s included), and one per operation step, which is what changes a server.

Events go to the history store's `audit` stream, kept `audit_retention_days` (DynamoDB TTL) and
never changed: no API updates or deletes them. Each carries the seed's AuditEvent fields in
snake_case (`event_id, timestamp, user_id, tenant_id, action, resource, details, ip_address,
user_agent, result`); the wire is camelCase (domains/system).

- `action` of an API call is `"<METHOD> <route template>"` (`"DELETE /api/v1/postgres/single/
  <instance_id>"`), of a step `"<operation type>/<step>"` (`"instance.create/provision"`).
- `resource` is the path called (or the resource id an operation works on); the id in it
  (`pgi-...`, `pgc-...`, `op-...`) is the record's target, so one resource's trail is one read.
- `details` never holds a secret: values under secret-like keys, bearer tokens, JWTs and the
  password of a connection URI are replaced by `[REDACTED]` (`redact`).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from pgfleet.ports.history import HistoryRecord

STREAM = "audit"
METRICS_STREAM = "api_metrics"
REDACTED = "[REDACTED]"
ANONYMOUS = "anonymous"
SYSTEM = "system"
RESULTS = ("SUCCESS", "FAILURE", "PARTIAL")
# A body in `details` is cut at this many characters (after redaction).
BODY_LIMIT = 2048

_SECRET_KEY = re.compile(
    r"pass(word|phrase|wd)?|secret|token|authorization|api[_-]?key|credential|private[_-]?key|cookie|"
    r"session|signature|webhook[_-]?url|routing[_-]?key",
    re.IGNORECASE,
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")
_URI_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<pw>[^@\s]+)(?P<at>@)", re.IGNORECASE)
_ID = re.compile(r"^(pgi|pgc|pgr|op|bkp|bks|rcv|vrf|alert|evt|secinc)-[0-9a-f]+$")


def redact(value: Any, key: str | None = None) -> Any:
    """`value` with every secret replaced by `[REDACTED]`: whatever sits under a secret-like
    key (password, token, secret, authorization, api_key, credential...), and inside any
    string a JWT, a bearer token, or the password of a `scheme://user:password@` URI."""
    if key is not None and _SECRET_KEY.search(key):
        return REDACTED if value not in (None, "", [], {}) else value
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        text = _JWT.sub(REDACTED, value)
        text = _BEARER.sub(f"Bearer {REDACTED}", text)
        return _URI_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}{m['at']}", text)
    return value


def body_details(raw: str | None) -> Any:
    """A request body for `details`: parsed JSON redacted (or redacted text), cut to
    BODY_LIMIT characters."""
    if not raw:
        return None
    try:
        value = redact(json.loads(raw))
    except ValueError:
        value = redact(raw)
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    if len(text) > BODY_LIMIT:
        return {"truncated": True, "text": text[:BODY_LIMIT]}
    return value


def target_of(path: str) -> str | None:
    """The most specific resource id in a path (`/api/v1/postgres/single/pgi-1/backups` ->
    `pgi-1`), or None."""
    ids = [segment for segment in path.split("/") if _ID.match(segment)]
    return ids[-1] if ids else None


def call_event(
    *,
    at: datetime,
    method: str,
    path: str,
    route: str | None,
    status: int,
    user_id: str | None,
    tenant_id: str | None,
    ip_address: str | None,
    user_agent: str | None,
    details: dict[str, Any],
    retention_days: int,
) -> HistoryRecord:
    """The audit event of one API call."""
    return _event(
        at=at,
        action=f"{method} {route or path}",
        resource=path,
        target_id=target_of(path),
        user_id=user_id or ANONYMOUS,
        tenant_id=tenant_id,
        ip_address=ip_address,
        user_agent=user_agent,
        details=redact(details),
        result="SUCCESS" if status < 400 else "FAILURE",
        retention_days=retention_days,
    )


def step_event(
    op: dict[str, Any], step: str, succeeded: bool, reason: str | None, retention_days: int
) -> HistoryRecord:
    """The audit event of one operation step (what changes a server), as the user who asked
    for the operation (or `system`, for reconcile and schedules)."""
    return _event(
        at=datetime.now(UTC),
        action=f"{op['type']}/{step}",
        resource=op["resource_id"],
        target_id=op["resource_id"],
        user_id=op.get("requested_by") or SYSTEM,
        tenant_id=op.get("tenant_id"),
        ip_address=None,
        user_agent=None,
        details=redact(
            {
                "operation_id": op["id"],
                "operation_type": op["type"],
                "step": step,
                "status": "succeeded" if succeeded else "failed",
                "reason": (reason or "")[:BODY_LIMIT] or None,
            }
        ),
        result="SUCCESS" if succeeded else "FAILURE",
        retention_days=retention_days,
    )


def action_event(
    *,
    action: str,
    resource: str,
    target_id: str | None,
    user_id: str | None,
    tenant_id: str | None,
    succeeded: bool,
    details: dict[str, Any],
    retention_days: int,
) -> HistoryRecord:
    """The audit event of something the platform did to a server outside an operation (a
    session terminated, by a user or by auto-resolve)."""
    return _event(
        at=datetime.now(UTC), action=action, resource=resource, target_id=target_id,
        user_id=user_id or SYSTEM, tenant_id=tenant_id, ip_address=None, user_agent=None,
        details=redact(details), result="SUCCESS" if succeeded else "FAILURE", retention_days=retention_days,
    )  # fmt: skip


def _event(
    *,
    at: datetime,
    action: str,
    resource: str,
    target_id: str | None,
    user_id: str,
    tenant_id: str | None,
    ip_address: str | None,
    user_agent: str | None,
    details: dict[str, Any],
    result: str,
    retention_days: int,
) -> HistoryRecord:
    record = HistoryRecord(
        stream=STREAM,
        target_id=target_id,
        tenant_id=tenant_id,
        at=at,
        data={},
        ttl_seconds=retention_days * 86400,
    )
    record.data.update(
        event_id=f"evt-{record.id}",
        timestamp=at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        user_id=user_id,
        tenant_id=tenant_id,
        action=action,
        resource=resource,
        details=details,
        ip_address=ip_address,
        user_agent=user_agent,
        result=result,
    )
    return record


def metrics_record(
    *,
    at: datetime,
    route: str,
    method: str,
    status: int,
    seconds: float,
    user_id: str | None,
    tenant_id: str | None,
    path: str,
    request_bytes: int,
    response_bytes: int,
    database_queries: int,
    database_seconds: float,
    retention_days: int,
) -> HistoryRecord:
    """The seed's API-metrics record of one request (`api_metrics` stream)."""
    return HistoryRecord(
        stream=METRICS_STREAM,
        target_id=target_of(path),
        tenant_id=tenant_id,
        at=at,
        data={
            "api_endpoint": route,
            "method": method,
            "response_time_ms": round(seconds * 1000, 3),
            "status_code": status,
            "tenant_id": tenant_id,
            "user_id": user_id,
            "timestamp": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "request_size_bytes": request_bytes,
            "response_size_bytes": response_bytes,
            "database_queries": database_queries,
            "database_time_ms": round(database_seconds * 1000, 3),
        },
        ttl_seconds=retention_days * 86400,
    )
