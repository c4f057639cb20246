"""Authentication (JWT) and authorization (roles -> permissions), as data.

A token carries `sub`, `tenant_id`, `roles` and optionally `permissions` (the seed's JWT
structure). A request needs the one permission its route declares (`pgfleet.core.domain.requires`); a
route that declares none is refused. A principal holds the union of its roles' permissions plus any the token
grants explicitly.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgfleet.core.errors import Forbidden, Unauthorized

ALL = "*"
DEFAULT_TENANT = "default"
TOKEN_TTL_SECONDS = 12 * 3600

# Role -> permissions. "area:*" grants every action of an area; "*" grants everything and
# every tenant.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({ALL}),
    "operator": frozenset({"postgres:*", "operations:read", "backup:*", "monitoring:*"}),
    "viewer": frozenset({"postgres:read", "operations:read", "backup:read", "monitoring:read"}),
}


@dataclass(frozen=True)
class Principal:
    sub: str
    tenant_id: str
    roles: tuple[str, ...]
    permissions: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_platform_admin(self) -> bool:
        return ALL in self.permissions

    def can(self, permission: str) -> bool:
        area = permission.split(":", 1)[0]
        return bool({ALL, permission, f"{area}:*"} & self.permissions)

    def sees_tenant(self, tenant_id: str) -> bool:
        return self.is_platform_admin or tenant_id == self.tenant_id


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    roles = claims.get("roles") or ([claims["role"]] if claims.get("role") else [])
    if not isinstance(roles, list) or not roles:
        raise Unauthorized("token has no roles")
    unknown = [r for r in roles if r not in ROLE_PERMISSIONS]
    if len(unknown) == len(roles):
        raise Forbidden(f"unknown role(s): {', '.join(map(str, unknown))}")
    perms: set[str] = set()
    for role in roles:
        perms |= ROLE_PERMISSIONS.get(role, frozenset())
    # Explicit permissions in a token may narrow-grant more, never "*".
    perms |= {p for p in claims.get("permissions", []) if isinstance(p, str) and p != ALL}
    return Principal(
        sub=str(claims.get("sub", "")),
        tenant_id=str(claims.get("tenant_id") or DEFAULT_TENANT),
        roles=tuple(roles),
        permissions=frozenset(perms),
    )


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
        role: str,
        tenant_id: str = DEFAULT_TENANT,
        sub: str = "local-user",
        ttl: int = TOKEN_TTL_SECONDS,
    ) -> str:
        import jwt

        if role not in ROLE_PERMISSIONS:
            raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLE_PERMISSIONS)}")
        now = int(time.time())
        claims = {
            "sub": sub,
            "tenant_id": tenant_id,
            "roles": [role],
            "iss": self.issuer,
            "iat": now,
            "exp": now + ttl,
        }
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
                options={"verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc


def bearer_token(headers: dict[str, str]) -> str:
    value = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <JWT>'")
    return token.strip()
