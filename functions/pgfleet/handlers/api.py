"""The api Lambda: one resolver, a Router per domain, one error shape.

Authentication and authorization happen before routing, so a request without a valid token is
401 and a role that may not act is 403 whatever its body; validation (422) comes after.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from pgfleet import __version__
from pgfleet.core import audit, auth, rate_limits, request_checks, request_context, telemetry
from pgfleet.core.context import current, provide
from pgfleet.core.domain import PUBLIC, Deprecation, deprecation_of, permission_of, requires
from pgfleet.core.errors import Forbidden, MethodNotAllowed, ServiceError
from pgfleet.core.responses import JSON, error_event_response, error_response, validation_details
from pgfleet.core.settings import get_settings
from pgfleet.handlers import domains, emf
from pgfleet.wiring import cold_start, dependencies

log = logging.getLogger("pgfleet.api")

provide(dependencies)
cold_start()
app = APIGatewayHttpResolver(enable_validation=True)
for _domain in domains.install():
    for _mount in _domain.mounts:
        app.include_router(_mount.router, prefix=_mount.prefix or None)
app.enable_swagger(
    path="/api/v1/docs",
    title="pgfleet",
    version=__version__,
    description="Control plane for PostgreSQL fleets.",
    security_schemes={"bearer": HTTPBearer(bearerFormat="JWT")},
    security=[{"bearer": []}],
)


@app.get("/api/v1/openapi.json", include_in_schema=False)
@requires(PUBLIC)
def openapi_json() -> Any:
    from aws_lambda_powertools.event_handler.api_gateway import Response

    return Response(
        status_code=200,
        content_type=JSON,
        body=app.get_openapi_json_schema(
            title="pgfleet",
            version=__version__,
            security_schemes={"bearer": HTTPBearer(bearerFormat="JWT")},
            security=[{"bearer": []}],
        ),
    )


def _request_id() -> str | None:
    try:
        return app.current_event.request_context.request_id
    except Exception:
        return None


@app.exception_handler(ServiceError)
def _service_error(exc: ServiceError) -> Any:
    return error_response(exc.status, exc.code, exc.message, exc.details, _request_id())


@app.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Any:
    errors = exc.errors()
    # A path segment that cannot be an id of this API names nothing: 404, as an unknown id.
    unknown = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("path",)]
    if unknown:
        where = ", ".join(f"{e['loc'][-1]} {str(e.get('input', ''))[:64]!r}" for e in unknown)
        return error_response(
            404, "not_found", f"not found: {where} is not an id of this API", validation_details(unknown),
            _request_id(),
        )  # fmt: skip
    return error_response(
        422, "validation_error", "the request is not valid", validation_details(errors), _request_id()
    )


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(exc: RequestUnsupportedContentType) -> Any:
    # request_checks answers this before routing; this is the resolver's own guard.
    return error_response(
        415, "unsupported_media_type", "send the body as JSON, with 'Content-Type: application/json'",
        None, _request_id(),
    )  # fmt: skip


@app.not_found
def _not_found(exc: NotFoundError) -> Any:
    return error_response(
        404,
        "not_found",
        f"no route for {app.current_event.http_method} {app.current_event.path}",
        None,
        _request_id(),
    )


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Any:
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; see the server log", None, _request_id())


_tokens = auth.verifier  # the tests reset it (cache_clear) with the settings


def authenticate(event: dict[str, Any]) -> auth.Principal:
    """The caller of a protected request. In AWS the HTTP API's JWT authorizer has already
    verified the token's signature and passes its claims, every one as a string (lists as
    "[a b]"): expiry and audience are checked again here. Locally the token is verified here."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims")
    if claims:
        claims = auth.authorizer_claims(claims, audience=get_settings().jwt_audience)
    else:
        claims = _tokens().verify(auth.bearer_token(event.get("headers") or {}))
    return auth.principal_from_claims(claims)


# Routes that the swagger UI adds (the page and its assets) are public like the document.
for _route in app._static_routes + app._dynamic_routes:
    if _route.path.startswith("/api/v1/docs"):
        requires(PUBLIC)(_route.func)

NO_ROUTE = object()


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str  # the template: /api/v1/postgres/single/<instance_id>
    rule: Any
    permission: str | None
    deprecation: Deprecation | None


@functools.cache
def routes() -> tuple[RouteInfo, ...]:
    return tuple(
        RouteInfo(route.method, route.path, route.rule, permission_of(route.func), deprecation_of(route.func))
        for route in app._static_routes + app._dynamic_routes
    )


def route_permissions() -> tuple[tuple[str, str, Any, str | None], ...]:
    """(method, path, compiled rule, declared permission or None) of every route."""
    return tuple((r.method, r.path, r.rule, r.permission) for r in routes())


def public_paths() -> frozenset[str]:
    """Paths anyone may call without a token; the deployments exempt exactly these from the
    JWT authorizer."""
    return frozenset(r.path for r in routes() if r.permission == PUBLIC)


def routes_of(path: str) -> dict[str, RouteInfo]:
    """Method -> route, of every route whose template matches `path`."""
    return {r.method: r for r in routes() if r.rule.match(path)}


def path_permissions(path: str) -> dict[str, Any]:
    """Method -> declared permission of every route whose path matches `path`."""
    return {method: r.permission for method, r in routes_of(path).items()}


def required_permission(method: str, path: str) -> Any:
    """The permission the route of a request declares: a string, None when the route declares
    none (refused), or NO_ROUTE (405 when the path has other methods, else 404)."""
    return path_permissions(path).get(method, NO_ROUTE)


@dataclass
class Call:
    """What the middleware learns of one request on its way through."""

    method: str
    path: str
    route: RouteInfo | None
    request_id: str | None
    principal: auth.Principal | None = None
    limit: rate_limits.Decision | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Authenticate, authorize and rate-limit before routing; after it, count the request
    (Prometheus, EMF in AWS) and store its audit event and API-metrics record (one write)."""
    response, after = handle(event, context)
    after()
    return response


def handle(event: dict[str, Any], context: Any) -> tuple[dict[str, Any], Callable[[], None]]:
    """The response, and the work that may wait until it is sent: storing the request's audit
    event and metrics record. In Lambda both happen before the function returns
    (`lambda_handler`); the local gateway sends the response first, then stores them."""
    started = time.perf_counter()
    at = datetime.now(UTC)
    http = (event.get("requestContext") or {}).get("http") or {}
    path = event.get("rawPath") or http.get("path", "")
    method = str(http.get("method", "GET")).upper()
    request_id = (event.get("requestContext") or {}).get("requestId")
    settings = get_settings()
    with request_context.scope(request_id) as scope:
        methods = routes_of(path)
        call = Call(method, path, methods.get(method), request_id)
        response = _dispatch(event, context, call, methods, scope, settings.api_middleware)
        if call.route is not None and call.route.deprecation is not None:
            response.setdefault("headers", {}).update(call.route.deprecation.headers())
        if call.limit is not None:
            response.setdefault("headers", {}).update(call.limit.headers())
        seconds = time.perf_counter() - started
        if not settings.api_middleware:
            return response, _nothing
        return response, _observe(event, response, call, scope, at, seconds)


def _nothing() -> None:
    return None


# GETs are answered while their request is counted (they change nothing: over the limit, the
# answer is dropped for the 429); every other method is counted before it runs.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_counting = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rate-limit")


def _dispatch(
    event: dict[str, Any],
    context: Any,
    call: Call,
    methods: dict[str, RouteInfo],
    scope: request_context.RequestScope,
    middleware: bool,
) -> dict[str, Any]:
    method, path = call.method, call.path
    needed: Any = call.route.permission if call.route is not None else NO_ROUTE
    if needed is NO_ROUTE and methods:  # 405 needs a token unless every method of the path is public
        protected = any(r.permission != PUBLIC for r in methods.values())
    else:
        protected = needed != PUBLIC and (needed is not NO_ROUTE or path.startswith("/api/v1/"))
    counting: Future[rate_limits.Decision | None] | None = None
    try:
        if protected and middleware:
            _refuse_denied_source(event)
        principal = authenticate(event) if protected else None
        call.principal = principal
        if principal is not None:
            scope.user_id, scope.tenant_id = principal.sub, principal.tenant_id
        if needed is NO_ROUTE and methods:
            allowed = sorted(methods)
            raise MethodNotAllowed(
                f"{method} is not a method of {path}; it has {', '.join(allowed)}",
                details={"allowed": allowed},
            )
        if protected and needed is None:  # deny by default: a route must declare what it needs
            raise Forbidden(f"{method} {path} declares no permission; it is refused")
        if principal is not None and middleware:
            plan = rate_limits.plan_of(current(), principal)
            counting = _counting.submit(rate_limits.check, current(), principal, None, plan)
            if method not in SAFE_METHODS:
                _limit(call, counting)
                counting = None
        if principal is not None and isinstance(needed, str):
            auth.authorize(principal, needed)
        if needed is not NO_ROUTE:  # no route: the resolver's 404, whatever the body
            request_checks.check_headers(event.get("headers") or {})
            event = request_checks.json_body(event)
        if principal is not None:
            app.append_context(principal=principal)
        scope.database = request_context.DatabaseWork()
        response = app.resolve(event, context)
        if counting is not None:
            _limit(call, counting)
        return response
    except ServiceError as exc:
        if counting is not None and call.limit is None:  # refused before it ran: still counted
            call.limit = counting.result()
        extra = {"Allow": ", ".join(exc.details["allowed"])} if isinstance(exc, MethodNotAllowed) else None
        return error_event_response(exc.status, exc.code, exc.message, exc.details, call.request_id, extra)


def _refuse_denied_source(event: dict[str, Any]) -> None:
    """403 for a source address a threat mitigation denies (before its token is even read)."""
    address = ((event.get("requestContext") or {}).get("http") or {}).get("sourceIp")
    until = rate_limits.denied_until(current(), address)
    if until is not None:
        when = datetime.fromtimestamp(until, UTC).isoformat().replace("+00:00", "Z")
        raise Forbidden(
            f"requests from {address} are refused until {when} (a security threat mitigation)",
            details={"source_ip": address, "denied_until": when},
        )


def _limit(call: Call, counting: Future[rate_limits.Decision | None]) -> None:
    """Wait for the request's count; raise the 429 when it is over a limit."""
    call.limit = counting.result()
    if call.limit is not None and not call.limit.allowed:
        telemetry.count_rate_limited(call.limit.plan.name, call.limit.window or "")
        raise call.limit.error()


def _observe(
    event: dict[str, Any],
    response: dict[str, Any],
    call: Call,
    scope: request_context.RequestScope,
    at: datetime,
    seconds: float,
) -> Callable[[], None]:
    """Count the request, and return the write of its audit event and API-metrics record (one
    batch). The trail must not turn an answered request into an error: a failed write is
    logged with the (redacted) event."""
    settings = get_settings()
    status = int(response.get("statusCode", 500))
    route = call.route.path if call.route is not None else "unmatched"
    telemetry.observe_request(route, call.method, status, seconds)
    principal = call.principal
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    http = (event.get("requestContext") or {}).get("http") or {}
    body = event.get("body")
    if body and event.get("isBase64Encoded"):
        body = None  # not text: its size is recorded, not its content
    response_body = response.get("body") or ""
    details: dict[str, Any] = {
        "method": call.method,
        "path": call.path,
        "route": call.route.path if call.route is not None else None,
        "permission": call.route.permission if call.route is not None else None,
        "roles": sorted(principal.roles) if principal is not None else None,
        "status_code": status,
        "request_id": call.request_id,
        "query": event.get("queryStringParameters") or None,
        "body": audit.body_details(body),
        "duration_ms": round(seconds * 1000, 3),
    }
    if status >= 400:
        details["error_code"] = _error_code(response_body)
    elif call.method == "POST":
        details["created_id"] = _created_id(response_body)
    tenant = principal.tenant_id if principal is not None else None
    user = principal.sub if principal is not None else None
    database = scope.database or request_context.DatabaseWork()
    records = [
        audit.call_event(
            at=at,
            method=call.method,
            path=call.path,
            route=call.route.path if call.route is not None else None,
            status=status,
            user_id=user,
            tenant_id=tenant,
            ip_address=http.get("sourceIp"),
            user_agent=http.get("userAgent") or headers.get("user-agent"),
            details={k: v for k, v in details.items() if v is not None},
            retention_days=settings.audit_retention_days,
        ),
        audit.metrics_record(
            at=at,
            route=route,
            method=call.method,
            status=status,
            seconds=seconds,
            user_id=user,
            tenant_id=tenant,
            path=call.path,
            request_bytes=len((event.get("body") or "").encode()),
            response_bytes=len(response_body.encode()) if isinstance(response_body, str) else 0,
            database_queries=database.queries,
            database_seconds=database.seconds,
            retention_days=settings.api_metrics_retention_days,
        ),
    ]
    ports = current()

    def write() -> None:
        try:
            ports.history.append_all(records)
        except Exception as exc:
            log.error("audit event not stored (%s): %s", exc, records[0].data)
        if settings.emf_metrics:
            emf.emit(records[1].data)

    return write


def _error_code(body: str) -> str | None:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def _created_id(body: str) -> str | None:
    if not body.startswith("{"):
        return None
    try:
        value = json.loads(body).get("id")
    except ValueError:
        return None
    return value if isinstance(value, str) else None
