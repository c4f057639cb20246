"""The domain's exceptions. Every error a user can see is a ServiceError with an HTTP status."""

from __future__ import annotations

from typing import Any


class PgfleetError(Exception):
    """Base of every pgfleet exception."""


class EngineError(PgfleetError):
    """A data-plane backend (PostgreSQL, Patroni, pgBackRest, RDS) failed or refused."""


class StoreError(PgfleetError):
    """The metadata store failed."""


class ServiceError(PgfleetError):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(ServiceError):
    status = 400
    code = "bad_request"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ServiceError):
    """The path exists, but not with this method; `details["allowed"]` lists those it has."""

    status = 405
    code = "method_not_allowed"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class InvalidState(Conflict):
    code = "invalid_state"


class LimitExceeded(Conflict):
    """The request would take a tenant past one of its limits (settings.TenantLimits)."""

    code = "limit_exceeded"


class InsufficientCapacity(Conflict):
    """The host cannot hold what the request asks for (free memory or disk, with headroom)."""

    code = "insufficient_capacity"


class ValidationFailed(ServiceError):
    status = 422
    code = "validation_error"


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"
