"""Authorization accuracy (the seed's target: 100%): every route, called with every role's
token through the api handler, is refused with 403 exactly where the matrix says, and the
README publishes the matrix the code generates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pgfleet.core import auth
from pgfleet.core.domain import PUBLIC

REPO = Path(__file__).resolve().parents[2]
# A value each path parameter accepts (a well-formed id that names nothing).
SAMPLES = {
    "instance_id": "pgi-000000000000",
    "resource_id": "pgi-000000000000",
    "replica_id": "pgr-000000000000",
    "operation_id": "op-000000000000",
    "alert_id": "alert-000000000000",
    "backupId": "bkp-000000000000",
    "recoveryId": "rcv-000000000000",
    "verificationId": "vrf-000000000000",
    "tenant_id": "t_app",
}


def _concrete(path: str) -> str:
    return re.sub(r"<(\w+)>", lambda m: SAMPLES.get(m[1], "x-000000000000"), path)


def test_every_route_answers_every_role_as_the_matrix_says(fake_ports) -> None:  # type: ignore[no-untyped-def]
    from pgfleet.handlers import api, permissions_matrix
    from pgfleet.local.gateway import build_event
    from pgfleet.local.lambda_context import LocalLambdaContext

    tokens = auth.LocalTokens(fake_ports.settings.home)
    cells = permissions_matrix.matrix()
    assert len(cells) >= 60
    mismatches = []
    checked = 0
    for n, cell in enumerate(cells):
        path = _concrete(cell.path)
        for role in permissions_matrix.ROLES:
            tenant = None if role in auth.PLATFORM_ROLES else "acme"
            token = tokens.mint(role, tenant, sub=f"walker-{n}")  # a count of its own per route
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            body = b"{}" if cell.method in ("POST", "PUT", "PATCH") else b""
            event = build_event(cell.method, path, headers, body, "127.0.0.1")
            resp = api.lambda_handler(event, LocalLambdaContext("matrix"))
            status = resp["statusCode"]
            refused = status == 403 and json.loads(resp["body"])["error"]["code"] == "forbidden"
            checked += 1
            if refused == cell.allowed[role] or status >= 500:
                mismatches.append((cell.method, cell.path, role, status, cell.allowed[role]))
    assert mismatches == []
    assert checked == len(cells) * len(permissions_matrix.ROLES)


def test_every_route_declares_a_permission_and_the_public_ones_are_few() -> None:
    from pgfleet.handlers import permissions_matrix

    cells = permissions_matrix.matrix()
    assert all(not c.permission.startswith("(none") for c in cells)
    assert {c.path for c in cells if c.permission == PUBLIC} <= {
        "/api/health", "/api/version", "/api/v1/openapi.json",
    }  # fmt: skip


def test_the_readme_publishes_the_current_matrix() -> None:
    from pgfleet.handlers import permissions_matrix

    readme = (REPO / "README.md").read_text()
    assert permissions_matrix.with_matrix(readme) == readme, (
        "the README's matrix is stale: python -m pgfleet.handlers.permissions_matrix --write README.md"
    )


@pytest.mark.parametrize("role", list(auth.ROLE_PERMISSIONS))
def test_each_role_is_confined_to_its_tenant(role: str) -> None:
    from pgfleet.handlers import permissions_matrix

    principal = permissions_matrix.principal_of(role)
    assert principal.is_platform_admin == (role == "admin")
    assert principal.sees_tenant("acme") and principal.sees_tenant("other") == (role == "admin")
