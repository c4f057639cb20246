"""The detailed health and the Prometheus metrics of a real local stack, through its gateway:
every dependency checked with its latency, a stopped etcd seen CRITICAL (and healthy again
once `pgfleet up` restarts it), an exposition that Prometheus' parser reads with request
counters that move and the series of a real instance; then a real Prometheus scraping it with
a bearer token."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgfleet.local.etcd import EtcdServer
from tests.helpers import LocalStack, free_port, running_stack, wait_for

SINGLE = "/api/v1/postgres/single"
DETAILED = "/api/health/detailed"
INFRASTRUCTURE = {"metadata", "queue", "secrets", "scheduler", "engine", "etcd"}
PROMETHEUS = shutil.which("prometheus")


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-health-") as s:
        yield s


@pytest.fixture(scope="module")
def admin(stack: LocalStack) -> str:
    return stack.token("admin", None)  # a platform token


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, operator: str) -> str:
    """One running instance of tenant acme, with its first backup completed."""
    status, body = stack.request("POST", SINGLE, {"name": "watched-db"}, token=operator)
    assert status == 202, body
    stack.wait_created(body["operation_id"], operator)
    stack.wait_first_backup(f"{SINGLE}/{body['id']}", operator)
    return str(body["id"])


def _health(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("GET", DETAILED, token=token)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def _by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["component"]: c for c in body["components"]}


def _scrape(stack: LocalStack, token: str) -> tuple[str, dict[str, list[Any]]]:
    """The content type and the families of /api/metrics, read by Prometheus' parser."""
    req = urllib.request.Request(stack.url + "/api/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 (loopback)
        content_type, text = resp.headers["Content-Type"], resp.read().decode()
    return content_type, {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(families: dict[str, list[Any]], sample: str, /, **labels: str) -> float | None:
    found = [
        s.value
        for samples in families.values()
        for s in samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def _present(families: dict[str, list[Any]], sample: str, /, **labels: str) -> float:
    value = _value(families, sample, **labels)
    assert value is not None, f"no {sample} sample with {labels}"
    return value


def test_every_dependency_is_checked_with_its_latency(stack: LocalStack, admin: str, instance: str) -> None:
    body = _health(stack, admin)
    components = _by_name(body)
    assert INFRASTRUCTURE | {f"server:{instance}"} <= set(components), list(components)
    assert body["overall"] in ("HEALTHY", "WARNING"), body
    for component in body["components"]:
        assert component["status"] in ("HEALTHY", "WARNING"), component
        assert isinstance(component["latencyMs"], float) and component["latencyMs"] >= 0, component
        assert component["message"] and component["lastCheck"].endswith("Z")
    assert components["etcd"]["status"] == "HEALTHY", components["etcd"]
    assert f"127.0.0.1:{stack.etcd_port}" in components["etcd"]["message"]
    assert "PostgreSQL 15" in components["engine"]["message"], components["engine"]
    engine = {m["name"] for m in components["engine"]["metrics"]}
    assert engine == {"memory_available", "disk_free"}
    server = components[f"server:{instance}"]
    assert server["targetId"] == instance and "accepts connections" in server["message"], server
    metrics = {m["name"]: m["value"] for m in server["metrics"]}
    assert metrics["database_size"] > 0 and 0 <= metrics["last_backup_age"] < 600, metrics
    # the tenant's view: its server, and the API as one component
    status, mine = stack.request("GET", DETAILED, token=stack.token("viewer", "acme"))
    assert status == 200, mine
    assert [c["component"] for c in mine["components"]] == ["api", f"server:{instance}"]
    status, other = stack.request("GET", DETAILED, token=stack.token("viewer", "globex"))
    assert status == 200 and [c["component"] for c in other["components"]] == ["api"], other


def test_a_stopped_etcd_is_critical_until_it_is_back(stack: LocalStack, admin: str, instance: str) -> None:
    etcd = EtcdServer(stack.home / "etcd", stack.etcd_port, stack.etcd_peer_port)
    assert etcd.is_running()
    try:
        assert etcd.stop() == "etcd stopped"
        started = time.monotonic()
        body = _health(stack, admin)
        assert time.monotonic() - started < 15  # the checks are bounded whatever a dependency does
        components = _by_name(body)
        assert components["etcd"]["status"] == "CRITICAL", components["etcd"]
        assert "not reachable" in components["etcd"]["message"]
        assert body["overall"] == "CRITICAL"
        assert components["metadata"]["status"] in ("HEALTHY", "WARNING")  # the rest is still seen
        assert f"server:{instance}" in components
        # a tenant sees that the API is degraded, not which of its dependencies
        tenant = _health(stack, stack.token("viewer", "acme"))
        assert _by_name(tenant)["api"]["status"] == "CRITICAL" and "etcd" not in json.dumps(tenant)
    finally:
        stack.up()  # starts what is not running: etcd
    assert etcd.is_running()

    def healthy_again() -> dict[str, Any] | None:
        got = _health(stack, admin)
        return got if _by_name(got)["etcd"]["status"] == "HEALTHY" else None

    body = wait_for(healthy_again, 30, interval=0.5, what="etcd healthy again")
    assert body["overall"] in ("HEALTHY", "WARNING"), body


def test_the_metrics_parse_and_the_request_counters_move(
    stack: LocalStack, admin: str, operator: str, instance: str
) -> None:
    content_type, families = _scrape(stack, admin)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    route = {"route": f"{SINGLE}/<instance_id>", "method": "GET", "status": "200"}
    before = _present(families, "pgfleet_api_requests_total", **route)  # the api handler counts requests
    for _ in range(3):
        assert stack.request("GET", f"{SINGLE}/{instance}", token=operator)[0] == 200
    _, families = _scrape(stack, admin)
    assert _value(families, "pgfleet_api_requests_total", **route) == before + 3
    assert _value(families, "pgfleet_api_request_duration_seconds_count", **route) == before + 3
    assert _value(families, "pgfleet_api_requests_total", route="/api/metrics", method="GET", status="200")
    # platform-wide series
    assert _present(families, "pgfleet_queue_messages", state="waiting") >= 0
    assert _value(families, "pgfleet_operations", type="instance.create", status="succeeded") == 1
    # the instance, read from its server
    at = {"target_id": instance, "tenant_id": "acme", "kind": "instance"}
    assert (
        _value(families, "pgfleet_server_info", name="watched-db", status="running", version="15", **at) == 1
    )
    assert _value(families, "pgfleet_server_up", node=instance, **at) == 1
    assert _present(families, "pgfleet_server_max_connections", node=instance, **at) >= 20
    assert _present(families, "pgfleet_server_connections", node=instance, state="total", **at) >= 0
    assert _present(families, "pgfleet_server_database_size_bytes", **at) > 1_000_000
    assert 0 <= _present(families, "pgfleet_server_last_backup_age_seconds", **at) < 600
    # a tenant's scrape: its servers only
    _, mine = _scrape(stack, stack.token("viewer", "acme"))
    assert not [
        name for name in mine if name.startswith(("pgfleet_api_", "pgfleet_queue", "pgfleet_operations"))
    ]
    assert {s.labels["target_id"] for samples in mine.values() for s in samples} == {instance}
    _, theirs = _scrape(stack, stack.token("viewer", "globex"))
    assert not [s for samples in theirs.values() for s in samples]


def _query(port: int, expression: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
            answer = json.load(resp)
    except OSError:
        return []
    assert answer["status"] == "success", answer
    return answer["data"]["result"]  # type: ignore[no-any-return]


@pytest.mark.skipif(
    PROMETHEUS is None, reason="the prometheus binary is not installed (make system-packages)"
)
def test_a_real_prometheus_scrapes_the_metrics(
    stack: LocalStack, admin: str, instance: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(admin)
    token_file.chmod(0o600)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "2s", "scrape_timeout": "2s"},
                "scrape_configs": [
                    {
                        "job_name": "pgfleet",
                        "metrics_path": "/api/metrics",
                        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                        "static_configs": [{"targets": [f"127.0.0.1:{stack.api_port}"]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    assert PROMETHEUS is not None
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        up = wait_for(
            lambda: [r for r in _query(port, 'up{job="pgfleet"}') if r["value"][1] == "1"],
            90, interval=1, what=f"a successful scrape (see {tmp_path / 'prometheus.log'})",
        )  # fmt: skip
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{stack.api_port}"
        server = _query(port, f'pgfleet_server_up{{target_id="{instance}"}}')
        assert [r["value"][1] for r in server] == ["1"], server
        assert _query(port, 'pgfleet_api_requests_total{route="/api/metrics"}'), "scrapes are counted"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
