"""`terraform apply` of an HA cluster with a tenant, a backup schedule and quotas, against the
real local stack (Patroni, etcd and PostgreSQL nodes behind the gateway and worker): created,
changed in place, imported, destroyed, each checked through the API and a connection."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e.terraform_helpers import PROVIDER_BLOCK, Terraform, terraform_for
from tests.helpers import LocalStack, running_stack

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH")

CLUSTERS = "/api/v1/postgres/cluster"

# Two async nodes keep the stack light; the tenant, the schedule and the quota hang off the
# cluster's id, so Terraform creates them after it and destroys them before it. The schedule
# uses the six-field cron spelling, which the API stores as cron(...).
CONFIG = (
    PROVIDER_BLOCK
    + """
resource "pgfleet_cluster" "main" {
  name             = "tf-ha"
  node_count       = 2
  replication_mode = "async"
  memory           = 512
}

resource "pgfleet_tenant" "acme" {
  cluster_id = pgfleet_cluster.main.id
  tenant_id  = "tenant-abc"
  quota = {
    max_connections = 10
  }
}

resource "pgfleet_backup_schedule" "nightly" {
  cluster_id       = pgfleet_cluster.main.id
  full_backup_cron = "0 3 * * ? *"
  retention_days   = 14
}

resource "pgfleet_quota" "limits" {
  cluster_id      = pgfleet_cluster.main.id
  max_connections = 200
  alert_thresholds = {
    storage_percent = 70
  }
}

data "pgfleet_cluster" "main" {
  id = pgfleet_cluster.main.id
}

output "id" {
  value = pgfleet_cluster.main.id
}

output "nodes" {
  value = pgfleet_cluster.main.nodes
}

output "uri" {
  value     = pgfleet_cluster.main.uri
  sensitive = true
}

output "read_only_uri" {
  value     = pgfleet_cluster.main.read_only_uri
  sensitive = true
}

output "tenant_uri" {
  value     = pgfleet_tenant.acme.uri
  sensitive = true
}
"""
)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-tf-ha-") as s:
        yield s


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def terraform(stack: LocalStack, operator: str) -> Terraform:
    return terraform_for(stack, operator)


@pytest.fixture(scope="module")
def main(terraform: Terraform, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return terraform.workdir(tmp_path_factory.mktemp("tf") / "main", CONFIG)


def _get(stack: LocalStack, token: str, path: str) -> dict:
    status, body = stack.request("GET", path, token=token)
    assert status == 200, (path, body)
    return dict(body)


def _query(uri: str, sql: str) -> tuple:
    with psycopg.connect(uri, connect_timeout=5) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


def _timed(what: str, started: float) -> None:
    print(f"\n{what}: {time.monotonic() - started:.1f}s")


def test_apply_creates_the_cluster_and_what_hangs_off_it(
    stack: LocalStack, operator: str, terraform: Terraform, main: Path
) -> None:
    started = time.monotonic()
    terraform.apply(main)
    _timed("apply (2-node cluster, tenant, schedule, quota)", started)
    out = terraform.outputs(main)
    cluster = _get(stack, operator, f"{CLUSTERS}/{out['id']}")
    assert (cluster["status"], cluster["node_count"], cluster["memory"]) == ("running", 2, 512), cluster
    assert sorted(n["role"] for n in out["nodes"]) == ["primary", "replica"]
    assert {(n["id"], n["port"]) for n in out["nodes"]} == {
        (n["id"], n["endpoint"]["port"]) for n in cluster["nodes"]
    }

    assert _query(out["uri"], "SELECT current_user, pg_is_in_recovery()") == ("app_admin", False)
    assert _query(out["read_only_uri"], "SELECT current_database()") == ("app",)
    assert _query(out["tenant_uri"], "SELECT session_user, current_database()") == (
        "tenant_abc_user",
        "tenant_abc",
    )

    tenants = _get(stack, operator, f"{CLUSTERS}/{out['id']}/tenants")["tenants"]
    assert [(t["tenant_id"], t["quota"]["max_connections"]) for t in tenants] == [("tenant-abc", 10)]
    schedule = _get(stack, operator, f"{CLUSTERS}/{out['id']}/backup/schedule")
    assert (schedule["full_backup_cron"], schedule["retention_days"]) == ("cron(0 3 * * ? *)", 14)
    quota = _get(stack, operator, f"{CLUSTERS}/{out['id']}/quota")
    assert quota["max_connections"] == 200
    assert quota["alert_thresholds"] == {"storage_percent": 70, "connections_percent": 90}

    state = terraform.state_values(main)
    assert state["pgfleet_backup_schedule.nightly"]["full_backup_cron"] == "0 3 * * ? *"  # as configured
    assert state["data.pgfleet_cluster.main"]["nodes"] == out["nodes"]


def test_a_second_plan_has_nothing_to_do(terraform: Terraform, main: Path) -> None:
    assert terraform.plan_is_empty(main)


def test_memory_changes_in_place_through_a_rolling_resize(
    stack: LocalStack, operator: str, terraform: Terraform, main: Path
) -> None:
    (main / "main.tf").write_text(re.sub(r"(memory\s*=\s*)512", r"\g<1>768", CONFIG))
    actions = terraform.planned_actions(main)
    assert actions.pop("pgfleet_cluster.main") == ["update"]
    # The rest stays; the data source is read again once the cluster has changed.
    assert all(a in (["no-op"], ["read"]) for a in actions.values()), actions
    started = time.monotonic()
    terraform.apply(main)
    _timed("apply (rolling resize of 2 nodes)", started)
    out = terraform.outputs(main)
    cluster = _get(stack, operator, f"{CLUSTERS}/{out['id']}")
    assert (cluster["status"], cluster["memory"]) == ("running", 768), cluster
    assert _query(out["uri"], "SELECT count(*) FROM pg_database WHERE datname = 'tenant_abc'") == (1,)
    assert terraform.plan_is_empty(main)


def test_import_of_a_cluster_its_tenant_and_quota_created_over_http(
    stack: LocalStack, operator: str, terraform: Terraform, tmp_path: Path
) -> None:
    status, created = stack.request(
        "POST", CLUSTERS, {"name": "made-by-hand", "node_count": 1, "memory": 512}, operator
    )
    assert status == 202, created
    stack.wait_operation(created["operation_id"], operator, timeout=240)
    cid = created["id"]
    status, tenant = stack.request("POST", f"{CLUSTERS}/{cid}/tenants", {"tenant_id": "by-hand"}, operator)
    assert status == 201, tenant
    config = PROVIDER_BLOCK + (
        'resource "pgfleet_cluster" "adopted" {\n  name       = "made-by-hand"\n  node_count = 1\n'
        "  memory     = 512\n}\n\n"
        'resource "pgfleet_tenant" "adopted" {\n  cluster_id = pgfleet_cluster.adopted.id\n'
        '  tenant_id  = "by-hand"\n}\n\n'
        'resource "pgfleet_quota" "adopted" {\n  cluster_id = pgfleet_cluster.adopted.id\n}\n'
    )
    workdir = terraform.workdir(tmp_path / "import", config)
    for address, import_id in (
        ("pgfleet_cluster.adopted", cid),
        ("pgfleet_tenant.adopted", f"{cid}/by-hand"),
        ("pgfleet_quota.adopted", cid),
    ):
        terraform(workdir, "import", "-no-color", address, import_id)
    assert terraform.plan_is_empty(workdir)

    terraform(workdir, "destroy", "-auto-approve", "-no-color")
    assert stack.request("GET", f"{CLUSTERS}/{cid}", token=operator)[0] == 404


def test_destroy_removes_everything(
    stack: LocalStack, operator: str, terraform: Terraform, main: Path
) -> None:
    cid = terraform.outputs(main)["id"]
    started = time.monotonic()
    terraform(main, "destroy", "-auto-approve", "-no-color")
    _timed("destroy", started)
    assert stack.request("GET", f"{CLUSTERS}/{cid}", token=operator)[0] == 404
    assert stack.request("GET", f"{CLUSTERS}/{cid}/tenants", token=operator)[0] == 404
