"""Issue 15's last "done when" step, as a new user on the real local stack:
`connections/configure` puts PgBouncer in front of an instance, the instance object shows the
pooler, the app connects through the pooler URI (shown once) and runs a query; a viewer gets
403 and a stopped-server pooler 409 elsewhere (unit tests); a `kill -9` of PgBouncer is healed
by reconcile within 75 s, saying why; `down` stops the pooler and `up` brings it back; the
real `terraform` CLI turns a pooler on and off with `pooler_mode`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.terraform_helpers import PROVIDER_BLOCK, terraform_for
from tests.helpers import LocalStack, running_stack, wait_for

CONFIGURE = "/api/v1/performance/connections/configure"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-pooler-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "pooled-shop"}, token)
    assert status == 202, body
    stack.wait_created(body["operation_id"], token)
    return body


def _pid(stack: LocalStack, instance_id: str) -> int:
    return int((stack.home / "data" / "poolers" / instance_id / "pgbouncer.pid").read_text())


def _query(uri: str) -> Any:
    with psycopg.connect(uri, connect_timeout=3) as conn:
        return conn.execute("SELECT current_user, 40 + 2").fetchone()


def _answers(uri: str) -> bool:
    try:
        return bool(_query(uri))
    except psycopg.OperationalError:
        return False


def test_app_connects_through_the_pooler_and_reconcile_heals_it(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    pooler = {
        "poolMode": "transaction",
        "maxClientConnections": 200,
        "defaultPoolSize": 10,
        "reservePoolSize": 0,
    }
    viewer = stack.token("viewer", "acme")
    assert (
        stack.request("POST", CONFIGURE, {"targetId": iid, "poolerConfiguration": pooler}, viewer)[0] == 403
    )
    status, body = stack.request("POST", CONFIGURE, {"targetId": iid, "poolerConfiguration": pooler}, token)
    assert status == 202, body
    stack.wait_operation(body["operationId"], token)
    uri = body["credentials"]["poolerUri"]
    assert _query(uri) == (instance["username"], 42)
    _, got = stack.request("GET", f"/api/v1/postgres/single/{iid}", token=token)
    assert got["pooler"]["port"] == body["pooler"]["port"] != got["endpoint"]["port"]
    assert got["pooler"]["status"] == "running" and got["pooler"]["pool_mode"] == "transaction"

    os.kill(_pid(stack, iid), signal.SIGKILL)
    started = time.monotonic()
    wait_for(lambda: _answers(uri), timeout=75, interval=1, what="reconcile to restart the killed pgbouncer")
    print(f"pooler healed {time.monotonic() - started:.1f}s after kill -9")

    def says_why() -> str | None:
        reason = stack.request("GET", f"/api/v1/postgres/single/{iid}", token=token)[1]["pooler"][
            "status_reason"
        ]
        return reason if "reconcile" in reason and "not running" in reason else None

    wait_for(says_why, timeout=30, interval=0.5, what="the pooler to say reconcile started it")

    stack.down()
    assert not _answers(uri)
    stack.up()
    wait_for(lambda: _answers(uri), timeout=75, interval=1, what="the pooler back after up")


TF_CONFIG = """
resource "pgfleet_instance" "pooled" {
  name        = "tf-pooled"
  pooler_mode = %s
}

output "id" {
  value = pgfleet_instance.pooled.id
}

output "pooler_port" {
  value = pgfleet_instance.pooled.pooler_port
}

output "uri" {
  value     = pgfleet_instance.pooled.uri
  sensitive = true
}
"""


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH")
def test_terraform_pooler_mode_turns_the_pooler_on_and_off(
    stack: LocalStack, token: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    terraform = terraform_for(stack, token)
    workdir = terraform.workdir(
        tmp_path_factory.mktemp("tf") / "pooled", PROVIDER_BLOCK + TF_CONFIG % '"transaction"'
    )
    terraform.apply(workdir)
    out = terraform.outputs(workdir)
    uri = re.sub(r":\d+/", f":{out['pooler_port']}/", out["uri"])
    assert _query(uri)[1] == 42  # the app, through the pooler Terraform asked for
    assert terraform.plan_is_empty(workdir)
    (workdir / "main.tf").write_text(PROVIDER_BLOCK + TF_CONFIG % "null")
    terraform.apply(workdir)
    _, got = stack.request("GET", f"/api/v1/postgres/single/{out['id']}", token=token)
    assert got["pooler"] is None
    assert not _answers(uri)
    assert terraform.plan_is_empty(workdir)
    terraform(workdir, "destroy", "-auto-approve", "-no-color")
