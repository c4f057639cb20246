"""Who a token is and what it sees: tenant scope (a token that names a tenant is confined to
it, whatever its roles; only an admin without a tenant is a platform token), and the claims
API Gateway's JWT authorizer hands to Lambda (every one a string)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

SINGLE = "/api/v1/postgres/single"
SEED_CLAIMS = {  # the seed's JWT structure
    "sub": "user_id",
    "tenant_id": "acme",
    "roles": ["admin", "security_analyst"],
    "permissions": ["backup:create", "monitoring:read", "security:investigate", "compliance:assess"],
    "iat": 1642248000,
}


def _bearer(fake_ports: Any, claims: dict[str, Any]) -> dict[str, str]:
    from pgfleet.core.auth import LocalTokens

    secret = LocalTokens(fake_ports.settings.home).secret()
    token = jwt.encode({"iss": "pgfleet-local", "exp": int(time.time()) + 600, **claims}, secret, "HS256")
    return {"Authorization": f"Bearer {token}"}


def _instances(call: Any, fake_ports: Any) -> dict[str, str]:
    ids = {}
    for tenant in ("acme", "globex"):
        status, body = call("POST", SINGLE, {"name": f"{tenant}-db"}, tenant=tenant)
        assert status == 202, body
        ids[tenant] = body["id"]
    fake_ports.drain()
    return ids


def test_an_admin_of_a_tenant_is_confined_to_it(call, fake_ports):
    ids = _instances(call, fake_ports)
    status, listing = call("GET", SINGLE, role="admin", tenant="acme")
    assert status == 200 and [i["id"] for i in listing["instances"]] == [ids["acme"]]
    assert call("GET", f"{SINGLE}/{ids['globex']}", role="admin", tenant="acme")[0] == 404
    assert call("POST", f"{SINGLE}/{ids['globex']}/stop", role="admin", tenant="acme")[0] == 404
    assert call("GET", f"{SINGLE}/{ids['acme']}", role="admin", tenant="acme")[0] == 200
    # its backups and alerts too: another tenant's are not there
    status, body = call("GET", "/api/v1/backup/list?tenantId=globex", role="admin", tenant="acme")
    assert status == 404, body
    status, body = call("POST", "/api/v1/backup/execute", {"backupType": "FULL"}, role="admin", tenant="acme")
    assert status == 202, body
    members = fake_ports.store.get("backup_set", body["backupId"])["members"]
    assert {fake_ports.store.get("backup", m)["parent_id"] for m in members} == {ids["acme"]}


@pytest.mark.parametrize("tenant", [None, "*"])
def test_a_platform_token_sees_every_tenant(call, fake_ports, tenant):
    ids = _instances(call, fake_ports)
    status, listing = call("GET", SINGLE, role="admin", tenant=tenant)
    assert status == 200 and {i["id"] for i in listing["instances"]} == set(ids.values())
    assert call("GET", f"{SINGLE}/{ids['globex']}", role="admin", tenant=tenant)[0] == 200


def test_a_seed_shaped_token_is_confined_to_its_tenant(call, fake_ports):
    ids = _instances(call, fake_ports)
    headers = _bearer(fake_ports, SEED_CLAIMS)
    status, listing = call("GET", SINGLE, role=None, headers=headers)
    assert status == 200 and [i["id"] for i in listing["instances"]] == [ids["acme"]]
    assert call("GET", f"{SINGLE}/{ids['globex']}", role=None, headers=headers)[0] == 404


@pytest.mark.parametrize("role", ["operator", "viewer"])
@pytest.mark.parametrize("tenant", [None, "", "*"])
def test_a_token_without_a_tenant_is_403_unless_platform(call, fake_ports, role, tenant):
    ids = _instances(call, fake_ports)
    claims = {"sub": "someone", "roles": [role]} | ({} if tenant is None else {"tenant_id": tenant})
    for method, path, body in (("GET", SINGLE, None), ("GET", f"{SINGLE}/{ids['acme']}", None),
                               ("POST", SINGLE, {"name": "shared-db"})):  # fmt: skip
        status, got = call(method, path, body, role=None, headers=_bearer(fake_ports, claims))
        assert status == 403 and got["error"]["code"] == "forbidden", got
        assert "names no tenant" in got["error"]["message"]
    assert sorted(r["name"] for r in fake_ports.store.list("instance")[0]) == ["acme-db", "globex-db"]


def test_no_shared_default_tenant(call, fake_ports):
    """Two tenant-less tokens used to land in one "default" tenant and see each other's."""
    status, created = call("POST", SINGLE, {"name": "mine-db"}, role="admin", tenant=None)
    assert status == 202 and created["tenant_id"] == "*"
    assert call("GET", f"{SINGLE}/{created['id']}", tenant="default")[0] == 404
    assert call("GET", SINGLE, tenant="default")[1]["instances"] == []


def test_mint_needs_a_tenant_except_for_admin(fake_ports):
    from pgfleet.core.auth import LocalTokens, principal_from_claims

    tokens = LocalTokens(fake_ports.settings.home)
    platform = principal_from_claims(tokens.verify(tokens.mint("admin")))
    assert platform.is_platform_admin and platform.tenant_id == "*"
    confined = principal_from_claims(tokens.verify(tokens.mint("admin", "acme")))
    assert not confined.is_platform_admin and confined.tenant_id == "acme"
    for tenant in (None, "", "*"):
        with pytest.raises(ValueError, match="needs a tenant"):
            tokens.mint("operator", tenant)


def test_cli_token_default_is_a_platform_token_for_admin(fake_ports, capsys):
    from pgfleet import cli
    from pgfleet.core.auth import LocalTokens, principal_from_claims

    assert cli.main(["token", "--role", "admin"]) == 0
    claims = LocalTokens(fake_ports.settings.home).verify(capsys.readouterr().out.strip())
    assert "tenant_id" not in claims and principal_from_claims(claims).is_platform_admin
    assert cli.main(["token", "--role", "operator"]) == 2
    assert "needs a tenant" in capsys.readouterr().err
    assert cli.main(["token", "--role", "operator", "--tenant", "acme"]) == 0


# --- the event API Gateway's JWT authorizer hands to Lambda ---------------------------------------


def _authorized_event(path: str, claims: dict[str, str], method: str = "GET") -> dict[str, Any]:
    """An HTTP API v2 event as it arrives behind the JWT authorizer: the Authorization header
    is still there, the verified claims are in requestContext.authorizer.jwt, all strings."""
    from pgfleet.local.gateway import build_event

    event = build_event(
        method, path, {"Authorization": "Bearer <verified by API Gateway>"}, b"", "203.0.113.9"
    )
    event["requestContext"]["authorizer"] = {
        "jwt": {"claims": claims, "scopes": None},
    }
    return event


def _aws_claims(**overrides: str) -> dict[str, str]:
    claims = {
        "sub": "user_id",
        "tenant_id": "acme",
        "roles": "[admin security_analyst]",
        "permissions": "[backup:create monitoring:read security:investigate compliance:assess]",
        "iat": "1642248000",
        "exp": str(int(time.time()) + 600),
        "iss": "https://issuer.example.com/",
        "aud": "pgfleet-api",
    }
    return {**claims, **overrides}


def _invoke(event: dict[str, Any]) -> tuple[int, Any]:
    import json

    from pgfleet.handlers.api import lambda_handler
    from pgfleet.local.lambda_context import LocalLambdaContext

    resp = lambda_handler(event, LocalLambdaContext("test"))
    return resp["statusCode"], json.loads(resp["body"])


def test_authorizer_string_claims_are_understood(call, fake_ports):
    ids = _instances(call, fake_ports)
    status, listing = _invoke(_authorized_event(SINGLE, _aws_claims()))
    assert status == 200, listing
    assert [i["id"] for i in listing["instances"]] == [ids["acme"]]  # an admin of acme: acme only
    status, _ = _invoke(_authorized_event(f"{SINGLE}/{ids['globex']}", _aws_claims()))
    assert status == 404
    # a single role as a bare string, and a viewer with an extra permission from the claim
    viewer = _aws_claims(roles="viewer", permissions="[postgres:write]")
    status, body = _invoke(_authorized_event(f"{SINGLE}/{ids['acme']}/stop", viewer, method="POST"))
    assert status == 202, body
    status, body = _invoke(_authorized_event(SINGLE, _aws_claims(roles="[admin]", tenant_id="*")))
    assert status == 200 and len(body["instances"]) == 2


def test_authorizer_claims_without_or_past_exp_are_401(call, fake_ports):
    assert _invoke(_authorized_event(SINGLE, _aws_claims()))[0] == 200  # the same claims, with exp
    for claims in (
        {k: v for k, v in _aws_claims().items() if k != "exp"},
        _aws_claims(exp=str(int(time.time()) - 5)),
        _aws_claims(exp="tomorrow"),
    ):
        status, body = _invoke(_authorized_event(SINGLE, claims))
        assert status == 401 and body["error"]["code"] == "unauthorized", (claims, body)
    status, body = _invoke(_authorized_event(SINGLE, _aws_claims(roles="[]")))
    assert status == 401 and "no roles" in body["error"]["message"]


def test_authorizer_audience_is_checked_when_configured(call, fake_ports, monkeypatch):
    from pgfleet.core import settings

    monkeypatch.setenv("PGFLEET_JWT_AUDIENCE", "pgfleet-api")
    settings.get_settings.cache_clear()
    assert _invoke(_authorized_event(SINGLE, _aws_claims()))[0] == 200
    assert _invoke(_authorized_event(SINGLE, _aws_claims(aud="[other pgfleet-api]")))[0] == 200
    status, body = _invoke(_authorized_event(SINGLE, _aws_claims(aud="other-api")))
    assert status == 401 and "aud" in body["error"]["message"]
    missing = {k: v for k, v in _aws_claims().items() if k != "aud"}
    assert _invoke(_authorized_event(SINGLE, missing))[0] == 401
