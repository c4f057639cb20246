"""Authentication (JWT) and authorization (roles -> permissions), as data.

A token carries `sub`, `tenant_id`, `roles` and optionally `permissions` (the seed's JWT
structure). A request needs the one permission its route declares (`pgfleet.core.domain.requires`); a
route that declares none is refused. A principal holds the union of its roles' permissions plus any the token
grants explicitly.

Scope: a token that names a tenant is confined to that tenant, whatever its roles (an admin of
"acme" administers acme). Only a platform token, role admin and no tenant (or "*"), sees every
tenant. A token that names no tenant and is not a platform token is refused (403): there is no
shared default tenant.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgfleet.core.errors import Forbidden, Unauthorized

ALL = "*"
# The tenant of a platform token: every tenant. What a platform token creates belongs to it, and
# only platform tokens see it (no tenant-confined token can name "*").
PLATFORM = ALL
TOKEN_TTL_SECONDS = 12 * 3600

# The areas of a tenant's own resources and their operation: what operators change and viewers
# read. Security, compliance, audit and system areas are granted by the roles below that name them.
RESOURCE_AREAS = (
    "postgres", "operations", "backup", "monitoring", "locks", "performance", "maintenance",
    "capacity", "notifications",
)  # fmt: skip

# Role -> permissions (the seed's RBAC section). "area:*" grants every action of an area; "*"
# grants everything. Scope is not a permission: every role but a platform admin (admin, no
# tenant in the token) is confined to the tenant its token names.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    # System administrator: every API; with no tenant in the token, every tenant.
    "admin": frozenset({ALL}),
    # Tenant administrator: every API within its tenant, its users' audit trail included.
    "tenant_admin": frozenset({ALL}),
    "operator": frozenset(
        {f"{area}:*" for area in RESOURCE_AREAS if area != "operations"}
        | {"operations:read", "incidents:read", "system:read", "system:configure"}
    ),
    "viewer": frozenset({f"{area}:read" for area in RESOURCE_AREAS} | {"incidents:read", "system:read"}),
    # Security analyst: threats and investigations, incidents, vulnerabilities, the audit trail.
    "security_analyst": frozenset(
        {"security:*", "incidents:*", "audit:read", "monitoring:read", "postgres:read", "operations:read"}
    ),
    # Compliance officer: frameworks, assessments, reports, remediation tasks, the audit trail.
    "compliance_officer": frozenset(
        {"compliance:*", "audit:read", "postgres:read", "operations:read", "backup:read"}
    ),
    # Regular user: read-only, the basic monitoring dashboard, its own audit events.
    "user": frozenset({"postgres:read", "operations:read", "monitoring:read", "audit:read_own"}),
}
# Roles that may act across every tenant when the token names none.
PLATFORM_ROLES = frozenset({"admin"})
# A permission a wider one implies: whoever reads the audit trail reads their own part of it.
IMPLIED_BY: dict[str, frozenset[str]] = {"audit:read_own": frozenset({"audit:read"})}
PERMISSION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*:(\*|[a-z][a-z0-9_]*)$")


@dataclass(frozen=True)
class Principal:
    sub: str
    tenant_id: str  # the tenant the token names; PLATFORM for a platform token
    roles: tuple[str, ...]
    permissions: frozenset[str] = field(default_factory=frozenset)
    plan: str | None = None  # the rate-limit plan the token claims (see core.rate_limits)

    @property
    def is_platform_admin(self) -> bool:
        """Every permission in every tenant: an admin whose token names no tenant."""
        return (
            self.tenant_id == PLATFORM and ALL in self.permissions and bool(PLATFORM_ROLES & set(self.roles))
        )

    def can(self, permission: str) -> bool:
        wanted = {permission, *IMPLIED_BY.get(permission, ())}
        granting = {ALL} | wanted | {f"{p.split(':', 1)[0]}:*" for p in wanted}
        return bool(granting & self.permissions)

    def sees_tenant(self, tenant_id: str) -> bool:
        return self.is_platform_admin or tenant_id == self.tenant_id


def claim_list(value: Any) -> list[str]:
    """A list claim in either form: a JSON array, or the string API Gateway's JWT authorizer
    passes to Lambda for one ("[admin security_analyst]"); a bare string is one item."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return [item for item in text.replace(",", " ").split() if item]
    if isinstance(value, list | tuple):
        if not all(isinstance(item, str) for item in value):
            raise Unauthorized("invalid token: a list claim holds something other than strings")
        return [item for item in value if item]
    raise Unauthorized(f"invalid token: a list claim is a {type(value).__name__}")


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """The principal of verified claims. No roles, a claim of the wrong type, or a permission
    that is not `area:action`: 401 (a malformed token). A role this API does not know: 403,
    naming it."""
    roles = claim_list(claims.get("roles")) or claim_list(claims.get("role"))
    if not roles:
        raise Unauthorized("token has no roles")
    unknown = [r for r in roles if r not in ROLE_PERMISSIONS]
    if unknown:
        raise Forbidden(
            f"unknown role(s): {', '.join(unknown)}; known: {', '.join(ROLE_PERMISSIONS)}",
            details={"unknown_roles": unknown},
        )
    perms: set[str] = set()
    for role in roles:
        perms |= ROLE_PERMISSIONS[role]
    # Explicit permissions in a token add to its roles', in the seed's strings; never "*".
    explicit = claim_list(claims.get("permissions"))
    malformed = [p for p in explicit if not PERMISSION_PATTERN.match(p)]
    if malformed:
        raise Unauthorized(
            f"invalid token: permissions {', '.join(repr(p) for p in malformed[:5])} are not "
            "of the form 'area:action' (e.g. backup:create)"
        )
    perms |= set(explicit)
    tenant = claims.get("tenant_id")
    if tenant is not None and not isinstance(tenant, str):
        raise Unauthorized("invalid token: tenant_id is not a string")
    tenant = (tenant or "").strip()
    if tenant in ("", ALL):
        if not PLATFORM_ROLES & set(roles):
            raise Forbidden(
                "the token names no tenant: only a platform token (role admin, no tenant_id) acts "
                "across tenants; use a token with your tenant_id",
                details={"roles": roles},
            )
        tenant = PLATFORM
    plan = claims.get("plan")
    if plan is not None and not isinstance(plan, str):
        raise Unauthorized("invalid token: plan is not a string")
    return Principal(
        sub=str(claims.get("sub", "")),
        tenant_id=tenant,
        roles=tuple(roles),
        permissions=frozenset(perms),
        plan=plan or None,
    )


def authorizer_claims(
    claims: dict[str, Any], audience: str | None = None, now: float | None = None
) -> dict[str, Any]:
    """The claims API Gateway's JWT authorizer passed, checked again here: the authorizer has
    verified the signature, but passes every claim as a string ("exp": "1642251600"). A token
    without exp, or past it, is refused, and so is one for another audience when one is set."""
    exp = claims.get("exp")
    try:
        expires = float(exp) if exp is not None and str(exp).strip() else None
    except ValueError:
        raise Unauthorized(f"invalid token: exp is not a time ({exp!r})") from None
    if expires is None:
        raise Unauthorized("invalid token: it has no exp (expiry) claim")
    if expires <= (time.time() if now is None else now):
        raise Unauthorized("invalid token: it has expired")
    if audience and audience not in claim_list(claims.get("aud")):
        raise Unauthorized("invalid token: it is not for this API (aud)")
    return claims


def tenant_scope(principal: Principal, tenant_id: str | None) -> str | None:
    """The tenant a call may act on or look at (the seed's `tenantId`): its own, or any for a
    platform admin (None: every tenant). Another tenant's id is a 404, as its resources are."""
    if principal.is_platform_admin:
        return tenant_id
    if tenant_id is not None and tenant_id != principal.tenant_id:
        from pgfleet.core.errors import NotFound

        raise NotFound(f"tenant {tenant_id} not found")
    return principal.tenant_id


def authorize(principal: Principal, needed: str) -> None:
    """Raise Forbidden unless the principal holds `needed` (the permission its route declares)."""
    if not principal.can(needed):
        raise Forbidden(
            f"role(s) {', '.join(principal.roles)} may not {needed}", details={"required": needed}
        )


class LocalTokens:
    """HS256 tokens signed with a secret generated under PGFLEET_HOME (the local stack)."""

    issuer = "pgfleet-local"

    def __init__(self, home: Path) -> None:
        self._path = home / "jwt-secret"
        self._secret: str | None = None

    def secret(self) -> str:
        if self._secret is None:
            if not self._path.exists():
                self._path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self._path.with_suffix(f".{os.getpid()}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_urlsafe(48))
                try:
                    os.link(tmp, self._path)  # first writer wins; never overwrite a live secret
                except FileExistsError:
                    pass
                tmp.unlink(missing_ok=True)
            self._secret = self._path.read_text().strip()
        return self._secret

    def mint(
        self,
        role: str | Sequence[str],
        tenant_id: str | None = None,
        sub: str = "local-user",
        ttl: int = TOKEN_TTL_SECONDS,
        permissions: Sequence[str] = (),
        plan: str | None = None,
    ) -> str:
        """A token for `role` (one or several) confined to `tenant_id`, with explicit
        `permissions` added; an admin token without a tenant is a platform token. Other roles
        need a tenant, and every role and permission must be known and well formed
        (ValueError)."""
        import jwt

        roles = [role] if isinstance(role, str) else list(role)
        unknown = [r for r in roles if r not in ROLE_PERMISSIONS]
        if not roles or unknown:
            raise ValueError(
                f"unknown role(s) {', '.join(unknown) or '(none)'}; known: {', '.join(ROLE_PERMISSIONS)}"
            )
        malformed = [p for p in permissions if not PERMISSION_PATTERN.match(p)]
        if malformed:
            raise ValueError(f"permission(s) {', '.join(malformed)} are not of the form area:action")
        if tenant_id in (None, "", ALL) and not PLATFORM_ROLES & set(roles):
            raise ValueError(
                f"a {'/'.join(roles)} token needs a tenant (--tenant); only admin tokens may name none"
            )
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": sub,
            "roles": roles,
            "iss": self.issuer,
            "iat": now,
            "exp": now + ttl,
        }
        if tenant_id:
            claims["tenant_id"] = tenant_id
        if permissions:
            claims["permissions"] = list(permissions)
        if plan:
            claims["plan"] = plan
        return jwt.encode(claims, self.secret(), algorithm="HS256")

    def verify(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            return jwt.decode(
                token,
                self.secret(),
                algorithms=["HS256"],
                issuer=self.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc


class JwksTokens:
    """Tokens from an external issuer (Cognito, Auth0...), verified against its JWKS."""

    def __init__(self, issuer: str, jwks_url: str, audience: str | None) -> None:
        import jwt

        self._issuer = issuer
        self._audience = audience
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True)

    def verify(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            return jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "ES256"],
                issuer=self._issuer,
                audience=self._audience,
                options={"verify_aud": self._audience is not None, "require": ["exp"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc


@functools.cache
def verifier() -> LocalTokens | JwksTokens:
    """The process's token verifier: JWKS (an OIDC issuer) or the local signing secret."""
    from pgfleet.core.settings import get_settings

    settings = get_settings()
    if settings.auth_mode == "jwks":
        if not (settings.jwt_issuer and settings.jwks_url):
            raise RuntimeError("PGFLEET_AUTH_MODE=jwks needs PGFLEET_JWT_ISSUER and PGFLEET_JWKS_URL")
        return JwksTokens(settings.jwt_issuer, settings.jwks_url, settings.jwt_audience)
    return LocalTokens(settings.home)


def bearer_token(headers: dict[str, str]) -> str:
    value = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <JWT>'")
    return token.strip()
