"""The Terraform provider, driven by the real `terraform` CLI, against the real local stack.

The provider is installed the way a user installs it (a filesystem mirror and a CLI
configuration, `terraform init` offline), and the configuration applied is the generated
example, `terraform-provider-schema/examples/pgfleet_instance/main.tf`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgfleet.provider.generate import DEFAULT_OUT
from tests.e2e.terraform_helpers import PROVIDER_BLOCK, Terraform, terraform_for
from tests.helpers import LocalStack, running_stack

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH")

EXAMPLE = DEFAULT_OUT / "examples" / "pgfleet_instance" / "main.tf"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    # A scratch home the postgres user can reach, stopped and removed however the tests end.
    with running_stack("pgfleet-tf-") as s:
        yield s


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def terraform(stack: LocalStack, operator: str) -> Terraform:
    return terraform_for(stack, operator)


@pytest.fixture(scope="module")
def example(terraform: Terraform, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return terraform.workdir(tmp_path_factory.mktemp("tf") / "example", EXAMPLE.read_text())


def _planned_action(terraform: Terraform, workdir: Path) -> list[str]:
    """What a plan would do to the example's instance."""
    return terraform.planned_actions(workdir)["pgfleet_instance.example"]


def test_apply_creates_an_instance_one_can_connect_to(
    stack: LocalStack, operator: str, terraform: Terraform, example: Path
) -> None:
    terraform.apply(example)
    out = terraform.outputs(example)
    status, body = stack.request("GET", f"/api/v1/postgres/single/{out['id']}", token=operator)
    assert status == 200 and body["status"] == "running" and body["memory"] == 2048, body
    assert (out["status"], out["port"]) == ("running", body["endpoint"]["port"])
    with psycopg.connect(str(out["uri"]), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("app_admin", "app")
    data = terraform.state_values(example)["data.pgfleet_instance.example"]
    assert (data["id"], data["port"], data["name"]) == (out["id"], out["port"], "orders-db")


def test_a_second_plan_has_nothing_to_do(terraform: Terraform, example: Path) -> None:
    assert terraform.plan_is_empty(example)


def test_terraform_reads_the_committed_schema(terraform: Terraform, example: Path) -> None:
    served = json.loads(terraform(example, "providers", "schema", "-json").stdout)
    assert served == json.loads((DEFAULT_OUT / "schema.json").read_text())


def test_resources_are_resized_in_place_and_renamed_by_replacement(
    terraform: Terraform, example: Path
) -> None:
    original = (example / "main.tf").read_text()
    try:
        (example / "main.tf").write_text(re.sub(r"(memory\s*=\s*)2048", r"\g<1>4096", original))
        assert _planned_action(terraform, example) == ["update"]
        (example / "main.tf").write_text(original.replace('"orders-db"', '"orders-db-2"'))
        assert _planned_action(terraform, example) == ["delete", "create"]
    finally:
        (example / "main.tf").write_text(original)


def test_a_higher_version_is_an_upgrade_in_place_not_a_replacement(
    stack: LocalStack, operator: str, terraform: Terraform, example: Path
) -> None:
    original = (example / "main.tf").read_text()
    before = terraform.outputs(example)
    upgraded = re.sub(r'(version\s*=\s*)"15"', r'\g<1>"18"', original)
    assert upgraded != original
    (example / "main.tf").write_text(upgraded)
    assert _planned_action(terraform, example) == ["update"]
    terraform.apply(example)
    after = terraform.outputs(example)
    assert (after["id"], after["port"]) == (before["id"], before["port"])  # same instance, same endpoint
    status, body = stack.request("GET", f"/api/v1/postgres/single/{after['id']}", token=operator)
    assert status == 200 and body["version"] == "18" and body["status"] == "running", body
    with psycopg.connect(str(before["uri"]), connect_timeout=5) as conn:
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("18.")
    assert terraform.plan_is_empty(example)
    # Back to 15 would be a downgrade: the plan is refused with the API's reason.
    (example / "main.tf").write_text(original)
    plan = terraform(example, "apply", "-auto-approve", "-no-color", check=False)
    assert plan.returncode != 0 and "downgrades are not possible" in plan.stdout + plan.stderr
    (example / "main.tf").write_text(upgraded)


def test_import_of_an_instance_created_over_http(
    stack: LocalStack, operator: str, terraform: Terraform, tmp_path: Path
) -> None:
    status, created = stack.request(
        "POST", "/api/v1/postgres/single", {"name": "made-by-hand", "memory": 512}, operator
    )
    assert status == 202, created
    stack.wait_operation(created["operation_id"], operator)
    config = (
        PROVIDER_BLOCK
        + 'resource "pgfleet_instance" "adopted" {\n  name   = "made-by-hand"\n  memory = 512\n}\n'
    )
    workdir = terraform.workdir(tmp_path / "import", config)
    terraform(workdir, "import", "-no-color", "pgfleet_instance.adopted", created["id"])
    assert terraform.plan_is_empty(workdir)

    # Deleted behind Terraform's back: the next plan creates it again instead of failing.
    status, deleting = stack.request("DELETE", f"/api/v1/postgres/single/{created['id']}", token=operator)
    stack.wait_operation(deleting["operation_id"], operator)
    plan = terraform(workdir, "plan", "-detailed-exitcode", "-no-color", check=False)
    assert plan.returncode == 2 and "will be created" in plan.stdout, plan.stdout + plan.stderr


def _bad_config(**arguments: str) -> str:
    body = "".join(f"  {name} = {value}\n" for name, value in arguments.items())
    return PROVIDER_BLOCK + f'resource "pgfleet_instance" "bad" {{\n  name = "bad-db"\n{body}}}\n'


def test_invalid_values_are_diagnostics_on_their_attribute(
    stack: LocalStack, operator: str, terraform: Terraform, tmp_path: Path
) -> None:
    # Checked at plan time with the API's own model.
    workdir = terraform.workdir(tmp_path / "memory", _bad_config(memory="1"))
    plan = terraform(workdir, "plan", "-no-color", check=False)
    assert plan.returncode == 1
    assert "Error: Invalid value for memory" in plan.stderr, plan.stderr
    assert "greater than or equal to 256" in plan.stderr and "memory = 1" in plan.stderr

    # Passes the model, refused by the service (422): the diagnostic still names the attribute.
    workdir = terraform.workdir(tmp_path / "version", _bad_config(version='"99"'))
    apply = terraform(workdir, "apply", "-auto-approve", "-no-color", check=False)
    assert apply.returncode == 1
    assert "Error: Invalid value for version" in apply.stderr, apply.stderr
    assert "PostgreSQL 99 is not available" in apply.stderr and 'version = "99"' in apply.stderr
    _, listed = stack.request("GET", "/api/v1/postgres/single", token=operator)
    assert "bad-db" not in {i["name"] for i in listed["instances"]}


def test_destroy_removes_the_instance(
    stack: LocalStack, operator: str, terraform: Terraform, example: Path
) -> None:
    instance_id = terraform.outputs(example)["id"]
    terraform(example, "destroy", "-auto-approve", "-no-color")
    assert stack.request("GET", f"/api/v1/postgres/single/{instance_id}", token=operator)[0] == 404
