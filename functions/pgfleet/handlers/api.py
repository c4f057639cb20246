"""The api Lambda: one resolver, a Router per domain, one error shape.

Authentication and authorization happen before routing, so a request without a valid token is
401 and a role that may not act is 403 whatever its body; validation (422) comes after.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from pgfleet import __version__
from pgfleet.core import auth, request_checks
from pgfleet.core.context import provide
from pgfleet.core.domain import PUBLIC, permission_of, requires
from pgfleet.core.errors import Forbidden, MethodNotAllowed, ServiceError
from pgfleet.core.responses import JSON, error_event_response, error_response, validation_details
from pgfleet.core.settings import get_settings
from pgfleet.handlers import domains
from pgfleet.wiring import dependencies

log = logging.getLogger("pgfleet.api")

provide(dependencies)
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


@functools.cache
def _tokens() -> Any:
    settings = get_settings()
    if settings.auth_mode == "jwks":
        if not (settings.jwt_issuer and settings.jwks_url):
            raise RuntimeError("PGFLEET_AUTH_MODE=jwks needs PGFLEET_JWT_ISSUER and PGFLEET_JWKS_URL")
        return auth.JwksTokens(settings.jwt_issuer, settings.jwks_url, settings.jwt_audience)
    return auth.LocalTokens(settings.home)


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


@functools.cache
def route_permissions() -> tuple[tuple[str, str, Any, str | None], ...]:
    """(method, path, compiled rule, declared permission or None) of every route."""
    return tuple(
        (route.method, route.path, route.rule, permission_of(route.func))
        for route in app._static_routes + app._dynamic_routes
    )


def public_paths() -> frozenset[str]:
    """Paths anyone may call without a token; the deployments exempt exactly these from the
    JWT authorizer."""
    return frozenset(path for _, path, _, needed in route_permissions() if needed == PUBLIC)


def path_permissions(path: str) -> dict[str, Any]:
    """Method -> declared permission of every route whose path matches `path`."""
    return {method: needed for method, _, rule, needed in route_permissions() if rule.match(path)}


def required_permission(method: str, path: str) -> Any:
    """The permission the route of a request declares: a string, None when the route declares
    none (refused), or NO_ROUTE (405 when the path has other methods, else 404)."""
    return path_permissions(path).get(method, NO_ROUTE)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    path = event.get("rawPath") or event.get("requestContext", {}).get("http", {}).get("path", "")
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET").upper()
    methods = path_permissions(path)
    needed = methods.get(method, NO_ROUTE)
    if needed is NO_ROUTE and methods:  # 405 needs a token unless every method of the path is public
        protected = any(p != PUBLIC for p in methods.values())
    else:
        protected = needed != PUBLIC and (needed is not NO_ROUTE or path.startswith("/api/v1/"))
    request_id = event.get("requestContext", {}).get("requestId")
    try:
        principal = authenticate(event) if protected else None
        if needed is NO_ROUTE and methods:
            allowed = sorted(methods)
            raise MethodNotAllowed(
                f"{method} is not a method of {path}; it has {', '.join(allowed)}",
                details={"allowed": allowed},
            )
        if protected and needed is None:  # deny by default: a route must declare what it needs
            raise Forbidden(f"{method} {path} declares no permission; it is refused")
        if principal is not None and isinstance(needed, str):
            auth.authorize(principal, needed)
        if needed is not NO_ROUTE:  # no route: the resolver's 404, whatever the body
            request_checks.check_headers(event.get("headers") or {})
            event = request_checks.json_body(event)
    except ServiceError as exc:
        extra = {"Allow": ", ".join(exc.details["allowed"])} if isinstance(exc, MethodNotAllowed) else None
        return error_event_response(exc.status, exc.code, exc.message, exc.details, request_id, extra)
    if principal is not None:
        app.append_context(principal=principal)
    return app.resolve(event, context)
