"""A walk through tenants, quotas, alerts, resize and pause/resume over HTTP, against the real
local stack (gateway, worker, ticker, moto, PostgreSQL). Quotas are enforced at once when set
(PUT .../quota runs the same evaluation as the every-minute "quotas" schedule, which the stack
registers with its Scheduler: checked here too) rather than by waiting for the ticker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgfleet.adapters.engines.local.cgroups import CgroupLimits
from tests.helpers import LocalStack, running_stack

SINGLE = "/api/v1/postgres/single"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-tq-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("POST", SINGLE, {"name": "tenants-db", "memory": 512}, token)
    assert status == 202, body
    stack.wait_operation(body["operation_id"], token, timeout=180)
    return body


def _connect(uri: str) -> psycopg.Connection:
    return psycopg.connect(uri, connect_timeout=3, autocommit=True)


def _tenant(stack: LocalStack, token: str, instance: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    status, created = stack.request("POST", f"{SINGLE}/{instance['id']}/tenants", body, token)
    assert status == 201, created
    return created


def test_tenants_quota_schedule_resize_pause(stack: LocalStack, token: str, instance: dict[str, Any]) -> None:
    iid = instance["id"]
    base = f"{SINGLE}/{iid}"
    a = _tenant(
        stack, token, instance, {"tenant_id": "shop-a", "quota": {"max_storage_mb": 12, "max_connections": 2}}
    )
    b = _tenant(stack, token, instance, {"tenant_id": "shop-b", "mode": "schema_per_tenant"})
    viewer = stack.token("viewer", "acme")
    assert stack.request("POST", f"{base}/tenants", {"tenant_id": "nope"}, viewer)[0] == 403
    assert stack.request("POST", f"{base}/tenants", {"tenant_id": "x'; drop"}, token)[0] == 422
    assert stack.request("GET", f"{base}/tenants", token=stack.token("operator", "globex"))[0] == 404

    with _connect(a["credentials"]["uri"]) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (1)")
    with _connect(b["credentials"]["uri"]) as conn:
        conn.execute("CREATE TABLE orders (id int)")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        _connect(make_conninfo(a["credentials"]["uri"], dbname="app"))  # the instance's own database

    # Over its quota: the quota evaluation suspends the tenant's writes, reads go on.
    with _connect(a["credentials"]["uri"]) as conn:
        conn.execute(
            "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 120000) g"
        )
    status, quota = stack.request("PUT", f"{base}/quota", {"max_storage_mb": 10240, "max_connections": 50,
                                                            "alert_thresholds": {"storage_percent": 80, "connections_percent": 90}}, token)  # fmt: skip
    assert status == 200 and quota["usage"]["storage_mb"] > 0 and quota["writes_suspended"] is False, quota
    with _connect(a["credentials"]["uri"]) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO orders VALUES (2)")
    scheduler = boto3.client(
        "scheduler", endpoint_url=f"http://127.0.0.1:{stack.aws_port}", region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    schedule = scheduler.get_schedule(Name="pgfleet-quotas", GroupName="pgfleet")
    assert schedule["ScheduleExpression"] == "rate(1 minute)" and '"quotas"' in schedule["Target"]["Input"]

    status, body = stack.request("POST", f"{base}/resize", {"memory": 1024, "cpu": 2}, token)
    assert status == 202 and body["status"] == "resizing", body
    stack.wait_operation(body["operation_id"], token, timeout=120)
    _, got = stack.request("GET", base, token=token)
    assert got["memory"] == 1024 and got["status"] == "running"
    with _connect(a["credentials"]["uri"]) as conn:
        assert conn.execute("SHOW shared_buffers").fetchone() == ("256MB",)
    if CgroupLimits().unavailable_reason() is None:
        assert CgroupLimits().memory_limit_bytes(iid) == 1024 * 2**20
        assert "cgroup v1" in got["status_reason"]

    _, listing = stack.request("GET", f"{base}/tenants", token=token)
    shop_a = next(t for t in listing["tenants"] if t["tenant_id"] == "shop-a")
    assert shop_a["writes_suspended"] is True and shop_a["quota_used"]["storage_mb"] > 12
    _, alerts = stack.request("GET", "/api/v1/monitoring/alerts?status=ACTIVE", token=viewer)
    assert any(al["alertName"] == "TenantStorageQuotaExceeded:shop-a" for al in alerts["alerts"]), alerts

    status, deleting = stack.request("DELETE", f"{base}/tenants/shop-b", token=token)
    assert status == 202 and deleting["status"] == "deleting", deleting
    stack.wait_operation(deleting["operation_id"], token)
    _, listing = stack.request("GET", f"{base}/tenants", token=token)
    assert [t["tenant_id"] for t in listing["tenants"]] == ["shop-a"]

    status, body = stack.request("POST", f"{base}/pause", token=token)
    assert status == 202, body
    stack.wait_operation(body["operation_id"], token)
    assert stack.request("GET", base, token=token)[1]["status"] == "paused"
    with pytest.raises(psycopg.OperationalError):
        _connect(a["credentials"]["uri"])
    status, body = stack.request("POST", f"{base}/resume", token=token)
    assert status == 202, body
    stack.wait_operation(body["operation_id"], token)
    with _connect(a["credentials"]["uri"]) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)

    status, body = stack.request("DELETE", base, token=token)
    assert status == 202, body
    stack.wait_operation(body["operation_id"], token, timeout=180)
