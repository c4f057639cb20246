"""The structure the domains are built on: every route declares a permission and a route
without one is refused; the domain list, its manifests and the folders agree; a domain uses
another only through the names that domain's `__init__` exports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from pgfleet.core.auth import ROLE_PERMISSIONS
from pgfleet.core.domain import PUBLIC, requires
from pgfleet.handlers import domains as domain_list

DOMAINS_DIR = Path(__file__).resolve().parents[2] / "functions" / "pgfleet" / "domains"


def test_every_route_and_its_permission():
    from pgfleet.handlers import api

    table = {(method, path): needed for method, path, _, needed in api.route_permissions()}
    undeclared = sorted(k for k, v in table.items() if v is None)
    assert not undeclared, f"routes without a permission: {undeclared}"
    assert len(table) >= 60
    # What the seed's examples name, and what roles grant, is the vocabulary.
    assert table[("POST", "/api/v1/backup/execute")] == "backup:create"
    assert table[("GET", "/api/v1/monitoring/alerts")] == "monitoring:read"
    assert table[("POST", "/api/v1/postgres/single/<resource_id>/stop")] == "postgres:write"
    assert table[("GET", "/api/health")] == PUBLIC
    assert api.public_paths() == {"/api/health", "/api/version", "/api/v1/openapi.json", "/api/v1/docs"}
    areas = {p.split(":", 1)[0] for perms in ROLE_PERMISSIONS.values() for p in perms if p != "*"}
    for needed in set(table.values()) - {PUBLIC}:
        assert needed.split(":", 1)[0] in areas, f"no role grants anything of {needed}"
    print("\n".join(f"{m:6} {p:70} {n}" for (m, p), n in sorted(table.items(), key=lambda kv: kv[0][1])))


def test_a_route_without_a_permission_is_refused(call):
    from pgfleet.handlers import api

    path = "/api/v1/zz-undeclared"
    before = len(api.app._static_routes)

    @api.app.get(path)
    def undeclared() -> dict[str, str]:
        return {"reached": "yes"}

    api.routes.cache_clear()
    try:
        for role in ("admin", "operator", "viewer"):
            status, body = call("GET", path, role=role)
            assert status == 403, body
            assert "declares no permission" in body["error"]["message"]
        assert call("GET", path, role=None)[0] == 401
    finally:
        del api.app._static_routes[before:]
        api.routes.cache_clear()


def test_a_declared_permission_is_enforced_by_role(call):
    status, body = call("POST", "/api/v1/backup/execute", {"targetId": "pgi-000000000000"}, role="viewer")
    assert status == 403 and body["error"]["details"] == {"required": "backup:create"}
    assert call("GET", "/api/v1/monitoring/alerts", role="viewer")[0] == 200


def test_requires_rejects_a_malformed_permission():
    with pytest.raises(ValueError):
        requires("terminate")


def test_every_domain_folder_is_in_the_domain_list():
    folders = {p.name for p in DOMAINS_DIR.iterdir() if (p / "__init__.py").exists()}
    assert folders == {d.name for d in domain_list.DOMAINS}


def test_every_workflow_a_domain_defines_is_in_its_manifest():
    declared = {w.type for d in domain_list.DOMAINS for w in d.workflows}
    for module_path in DOMAINS_DIR.glob("*/*.py"):
        if module_path.stem == "__init__":
            continue
        module = importlib.import_module(f"pgfleet.domains.{module_path.parent.name}.{module_path.stem}")
        workflows = getattr(module, "WORKFLOWS", ())
        for workflow in workflows if isinstance(workflows, tuple) else ():
            assert workflow.type in declared, f"{module_path}: {workflow.type} is in no manifest"
    assert {"instance.create", "cluster.create", "replica.create", "backup.run", "tenant.delete"} <= declared


def test_scheduled_tasks_and_schedules_come_from_the_manifests():
    from pgfleet.handlers.scheduled import TASKS

    assert TASKS == domain_list.tasks()
    names = [s.name for s in domain_list.platform_schedules()]
    assert {"pgfleet-reconcile", "pgfleet-quotas", "pgfleet-backup-expiry"} <= set(names)
    assert len(names) == len(set(names))


def _exports(domain: str) -> set[str]:
    return set(importlib.import_module(f"pgfleet.domains.{domain}").__all__)


def test_a_domain_uses_another_only_through_its_exports():
    """import-linter (make lint) forbids importing another domain's modules; this checks the
    names used: `instances.connection_uri` must be in `instances.__all__`."""
    problems = []
    for path in sorted(DOMAINS_DIR.glob("*/*.py")):
        own = path.parent.name
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "pgfleet.domains":
                for alias in node.names:
                    if alias.name != own:
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pgfleet.domains."):
                other = (node.module or "").split(".")[2]
                if other != own:
                    missing = {a.name for a in node.names} - _exports(other)
                    problems += [f"{path.name}: {other}.{name}" for name in sorted(missing)]
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                other = aliases[node.value.id]
                if node.attr not in _exports(other):
                    problems.append(f"{own}/{path.name}:{node.lineno}: {other}.{node.attr}")
    assert not problems, "names used that the other domain does not export:\n" + "\n".join(problems)
