"""The authorization matrix: every route × every role, from the routes' declared permissions
and the roles' permissions (core/auth.py). The README publishes it; a unit test walks every
cell through the api handler and checks it answers as the matrix says.

    python -m pgfleet.handlers.permissions_matrix            # print the Markdown table
    python -m pgfleet.handlers.permissions_matrix --write README.md
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from pgfleet.core import auth
from pgfleet.core.domain import PUBLIC

START = "<!-- permissions-matrix:start (generated: python -m pgfleet.handlers.permissions_matrix --write README.md) -->"
END = "<!-- permissions-matrix:end -->"
ROLES = tuple(auth.ROLE_PERMISSIONS)


@dataclass(frozen=True)
class Cell:
    method: str
    path: str
    permission: str  # PUBLIC for routes anyone may call
    allowed: dict[str, bool]


def principal_of(role: str) -> auth.Principal:
    """A principal of `role` alone, confined to a tenant (admin: the platform)."""
    tenant = None if role in auth.PLATFORM_ROLES else "acme"
    claims = {"sub": "matrix", "roles": [role], **({"tenant_id": tenant} if tenant else {})}
    return auth.principal_from_claims(claims)


def matrix() -> list[Cell]:
    from pgfleet.handlers import api

    principals = {role: principal_of(role) for role in ROLES}
    cells = []
    for route in sorted(api.routes(), key=lambda r: (r.path, r.method)):
        if route.path.startswith("/api/v1/docs"):
            continue  # the Swagger UI's assets: public, as the document is
        permission = route.permission or "(none: refused)"
        allowed = {
            role: route.permission == PUBLIC
            or (route.permission is not None and principal.can(route.permission))
            for role, principal in principals.items()
        }
        cells.append(Cell(route.method, route.path, permission, allowed))
    return cells


def markdown() -> str:
    header = "| method | path | permission | " + " | ".join(ROLES) + " |"
    rule = "|---|---|---|" + "---|" * len(ROLES)
    rows = [
        f"| {c.method} | `{c.path}` | `{c.permission}` | "
        + " | ".join("✓" if c.allowed[r] else "·" for r in ROLES)
        + " |"
        for c in matrix()
    ]
    return "\n".join([header, rule, *rows])


def with_matrix(readme: str) -> str:
    """`readme` with the generated table between the START and END markers."""
    head, found, rest = readme.partition(START)
    if not found:
        raise ValueError("the README has no permissions-matrix markers")
    _, found, tail = rest.partition(END)
    if not found:
        raise ValueError("the README's permissions-matrix block is not closed")
    return f"{head}{START}\n{markdown()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="rewrite the matrix block of this README")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(with_matrix(args.write.read_text()))
    else:
        sys.stdout.write(markdown() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
