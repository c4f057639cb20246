"""The `pgfleet` command: run the local stack, mint tokens, refresh the CVE dataset."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgfleet", description="pgfleet control plane, locally")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the local stack in the background and wait until it is ready")
    sub.add_parser("down", help="stop everything 'up' started (state is kept)")
    sub.add_parser("status", help="which local services run")
    token = sub.add_parser("token", help="print a JWT for the local stack")
    token.add_argument(
        "--role",
        required=True,
        action="append",
        help="admin, tenant_admin, operator, viewer, security_analyst, compliance_officer or user; "
        "repeat for several roles",
    )
    token.add_argument(
        "--permission",
        action="append",
        default=[],
        help="an explicit permission added to the roles' (area:action, e.g. backup:create); repeatable",
    )
    token.add_argument("--plan", default=None, help="rate-limit plan: standard, premium or system")
    token.add_argument(
        "--tenant",
        default=None,
        help="the tenant the token is confined to; required except for admin, where none means "
        "a platform token (every tenant)",
    )
    token.add_argument("--sub", default="local-user")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    cve = sub.add_parser("cve", help="the CVE dataset the vulnerability scan matches against")
    cve_sub = cve.add_subparsers(dest="cve_command", required=True)
    cve_import = cve_sub.add_parser(
        "import", help="validate a JSON file of the shipped dataset's shape and make it the dataset used"
    )
    cve_import.add_argument(
        "file", help="the JSON file (see pgfleet/domains/security/data/postgresql_cves.json)"
    )
    args = parser.parse_args(argv)

    from pgfleet.core.settings import get_settings

    settings = get_settings()
    if args.command == "up":
        from pgfleet.local import stack

        try:
            stack.up(settings)
        except RuntimeError as exc:
            print(f"pgfleet up failed: {exc}", file=sys.stderr)
            return 1
        print(f"\npgfleet is up: API at http://127.0.0.1:{settings.api_port}  (docs: /api/v1/docs)")
        print(f"real-time events: ws://127.0.0.1:{settings.ws_port}/?token=<JWT>")
        print("mint a token:  .venv/bin/pgfleet token --role operator --tenant acme")
        return 0
    if args.command == "down":
        from pgfleet.local import stack

        stack.down(settings)
        return 0
    if args.command == "status":
        from pgfleet.local import stack

        print(json.dumps(stack.status(settings), indent=2))
        return 0
    if args.command == "token":
        from pgfleet.core.auth import LocalTokens

        try:
            print(
                LocalTokens(settings.home).mint(
                    args.role, args.tenant, args.sub, args.ttl, permissions=args.permission, plan=args.plan
                )
            )
        except ValueError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        return 0
    if args.command == "cve":
        from pathlib import Path

        from pgfleet.core.errors import ValidationFailed
        from pgfleet.domains import security

        try:
            dataset = security.import_cve_dataset(Path(args.file), settings.home)
        except (ValidationFailed, ValueError) as exc:
            print(f"pgfleet cve import: {exc} (nothing changed)", file=sys.stderr)
            return 2
        print(f"imported {len(dataset.cves)} CVEs (retrieved {dataset.retrieved}) into {dataset.origin}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
