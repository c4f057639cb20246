"""`GET /api/health/detailed` and `GET /api/metrics` through the api handler, with fake ports:
what each dependency's state makes of its component, who sees what, and an exposition that
Prometheus' own parser reads."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgfleet.domains.platform import health
from pgfleet.domains.platform.schedules import HISTORY_EXPIRY_SCHEDULE
from pgfleet.ports.engine import HostCapacity

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"
DETAILED = "/api/health/detailed"
INFRASTRUCTURE = ["metadata", "queue", "secrets", "scheduler", "engine", "etcd"]


def _instance(call, fake_ports, name: str = "orders-db", tenant: str = "acme") -> str:
    status, body = call("POST", SINGLE, {"name": name}, tenant=tenant)
    assert status == 202, body
    fake_ports.drain()
    return str(body["id"])


def _platform_health(call) -> dict[str, Any]:
    status, body = call("GET", DETAILED, role="admin", tenant=None)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def _by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["component"]: c for c in body["components"]}


@pytest.fixture
def scheduled(fake_ports):  # type: ignore[no-untyped-def]
    """The platform's schedules are in place, as `pgfleet up` and the deployments put them."""
    fake_ports.scheduler.put(HISTORY_EXPIRY_SCHEDULE)
    return fake_ports


def test_the_detailed_health_needs_a_token_and_the_basic_one_does_not(call, fake_ports):
    status, body = call("GET", DETAILED, role=None)
    assert status == 401 and body["error"]["code"] == "unauthorized", body
    status, body = call("GET", "/api/metrics", role=None)
    assert status == 401, body
    assert call("GET", "/api/health", role=None) == (200, {"status": "ok"})
    # monitoring:read is the permission; a compliance officer does not hold it
    status, body = call("GET", DETAILED, role="compliance_officer")
    assert status == 403 and body["error"]["details"] == {"required": "monitoring:read"}, body


def test_a_platform_token_sees_every_dependency_with_its_latency(call, scheduled):
    instance_id = _instance(call, scheduled)
    body = _platform_health(call)
    components = _by_name(body)
    assert list(components) == [*INFRASTRUCTURE, f"server:{instance_id}"]
    for component in body["components"]:
        assert component["status"] == "HEALTHY", component
        assert isinstance(component["latencyMs"], float) and component["latencyMs"] >= 0
        assert component["message"] and component["lastCheck"].endswith("Z")
    assert body["overall"] == "HEALTHY" and body["lastUpdated"].endswith("Z")
    server = components[f"server:{instance_id}"]
    assert server["targetId"] == instance_id
    metrics = {m["name"]: m for m in server["metrics"]}
    assert metrics["connection_usage"]["value"] == 1.0 and metrics["connection_usage"]["threshold"] == {
        "warning": 80.0,
        "critical": 95.0,
    }
    assert metrics["last_backup_age"]["unit"] == "seconds" and metrics["last_backup_age"]["value"] >= 0
    assert all(m["trend"] is None for m in server["metrics"])  # no history to tell a trend from
    engine = {m["name"]: m for m in components["engine"]["metrics"]}
    assert engine["disk_free"]["threshold"] == {"warning": 10.0, "critical": 5.0}  # lower is worse
    queue = {m["name"]: m["value"] for m in components["queue"]["metrics"]}
    assert queue == {"waiting": 0, "in_flight": 0, "delayed": 0}


def test_a_stopped_dcs_is_critical_and_so_is_the_whole(call, scheduled):
    scheduled.cluster_engine.dcs_healthy = False
    body = _platform_health(call)
    etcd = _by_name(body)["etcd"]
    assert etcd["status"] == "CRITICAL" and "not reachable" in etcd["message"], etcd
    assert "stop taking writes" in etcd["message"]
    assert body["overall"] == "CRITICAL"
    scheduled.cluster_engine.dcs_healthy = True
    assert _platform_health(call)["overall"] == "HEALTHY"


def test_each_dependency_tells_what_is_wrong(call, scheduled):
    # a backlog of operations
    scheduled.queue.messages.extend({"operation_id": f"op-{i}"} for i in range(health.QUEUE_WARNING))
    queue = _by_name(_platform_health(call))["queue"]
    assert queue["status"] == "WARNING" and "fall behind" in queue["message"], queue
    scheduled.queue.messages.clear()
    # a program of the engine missing, and the disk nearly full
    scheduled.engine.missing = ["/usr/lib/postgresql/15/bin/pg_basebackup"]
    engine = _by_name(_platform_health(call))["engine"]
    assert engine["status"] == "CRITICAL" and "pg_basebackup" in engine["message"], engine
    scheduled.engine.missing = []
    scheduled.engine.capacity = HostCapacity(65536, 65536, 2000.0, 8.0)
    engine = _by_name(_platform_health(call))["engine"]
    assert engine["status"] == "WARNING" and "8.0 GB of 2000.0 GB disk free" in engine["message"], engine
    scheduled.engine.capacity = HostCapacity(65536, 512, 2000.0, 1000.0)
    assert _by_name(_platform_health(call))["engine"]["status"] == "CRITICAL"
    scheduled.engine.capacity = HostCapacity(65536, 65536, 2000.0, 1000.0)
    # the platform's schedule gone
    scheduled.scheduler.delete(HISTORY_EXPIRY_SCHEDULE.name)
    scheduler = _by_name(_platform_health(call))["scheduler"]
    assert scheduler["status"] == "WARNING" and "is missing" in scheduler["message"]


def test_a_dependency_that_does_not_answer_is_critical_and_the_answer_comes_on_time(
    call, scheduled, monkeypatch
):
    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.3)
    monkeypatch.setattr(scheduled.secrets, "get", lambda name: time.sleep(3))
    started = time.monotonic()
    body = _platform_health(call)
    assert time.monotonic() - started < 2.0
    secrets = _by_name(body)["secrets"]
    assert secrets["status"] == "CRITICAL" and secrets["latencyMs"] is None, secrets
    assert secrets["message"] == "no answer within 0.3 s"
    assert body["overall"] == "CRITICAL"
    # a dependency that raises is critical with what it said
    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 5.0)

    def unreachable(*args: Any, **kwargs: Any) -> None:
        from pgfleet.core.errors import StoreError

        raise StoreError("could not read the queue's depth: connection refused")

    monkeypatch.setattr(scheduled.queue, "depth", unreachable)
    queue = _by_name(_platform_health(call))["queue"]
    assert queue["status"] == "CRITICAL" and "connection refused" in queue["message"], queue


def test_servers_that_cannot_be_listed_are_a_critical_component(call, scheduled, monkeypatch):
    from pgfleet.core.errors import StoreError

    _instance(call, scheduled)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise StoreError("could not list instance records: throttled")

    monkeypatch.setattr(scheduled.store, "list", broken)
    body = _platform_health(call)
    components = _by_name(body)
    assert components["servers"]["status"] == "CRITICAL" and "throttled" in components["servers"]["message"]
    assert components["metadata"]["status"] == "HEALTHY" and body["overall"] == "CRITICAL"


def test_servers_are_checked_for_real_and_only_a_sample(call, scheduled):
    first = _instance(call, scheduled)
    # its postgres died: the record still says running
    scheduled.engine.servers[first]["running"] = False
    server = _by_name(_platform_health(call))[f"server:{first}"]
    assert server["status"] == "CRITICAL" and "does not answer" in server["message"], server
    scheduled.engine.servers[first]["running"] = True
    # connections nearly used up
    from pgfleet.ports.engine import ServerStats

    full = ServerStats(90, 6, 96, 100, 8_000_000, 12.5, 10, 0, 0.99, 0, health.utcnow())
    scheduled.engine.stats = lambda server_id, database: full  # type: ignore[method-assign]
    server = _by_name(_platform_health(call))[f"server:{first}"]
    assert server["status"] == "CRITICAL" and "96 of 100" in server["message"], server
    del scheduled.engine.stats
    # at most SAMPLE_SIZE servers, the oldest first; a stopped one is not asked
    for n in range(health.SAMPLE_SIZE + 1):
        _instance(call, scheduled, f"db-{n}")
    assert call("POST", f"{SINGLE}/{first}/stop")[0] == 202
    scheduled.drain()
    servers = [c for c in _platform_health(call)["components"] if c["component"].startswith("server:")]
    assert len(servers) == health.SAMPLE_SIZE and f"server:{first}" not in [s["component"] for s in servers]


def test_a_cluster_with_a_node_down_is_a_warning(call, scheduled):
    status, body = call("POST", CLUSTERS, {"name": "ha-db"})
    assert status == 202, body
    scheduled.drain()
    scheduled.cluster_engine.nodes[body["id"]]["n3"]["running"] = False
    server = _by_name(_platform_health(call))[f"server:{body['id']}"]
    assert server["status"] == "WARNING" and "node n3 is down" in server["message"], server
    assert {m["name"] for m in server["metrics"]} >= {"connection_usage", "replication_lag"}
    scheduled.cluster_engine.nodes[body["id"]]["n1"]["running"] = False
    scheduled.cluster_engine.nodes[body["id"]]["n2"]["running"] = False
    server = _by_name(_platform_health(call))[f"server:{body['id']}"]
    assert server["status"] == "CRITICAL", server


def test_a_tenant_token_sees_its_servers_and_the_api_as_one(call, scheduled):
    mine = _instance(call, scheduled)
    theirs = _instance(call, scheduled, "other-db", tenant="globex")
    status, body = call("GET", DETAILED, role="viewer")
    assert status == 200, body
    assert [c["component"] for c in body["components"]] == ["api", f"server:{mine}"]
    assert f"server:{theirs}" not in json.dumps(body)
    assert body["overall"] == "HEALTHY"
    # the DCS stops: the tenant learns that the API is degraded, not which dependency
    scheduled.cluster_engine.dcs_healthy = False
    _, body = call("GET", DETAILED, role="viewer")
    api = _by_name(body)["api"]
    assert api["status"] == "CRITICAL" and body["overall"] == "CRITICAL"
    assert "etcd" not in json.dumps(body) and "127.0.0.1" not in json.dumps(body)


# --- /api/metrics ----------------------------------------------------------------------------------


def _scrape(fake_ports, role: str = "admin", tenant: str | None = None) -> tuple[dict[str, str], str]:
    """The metrics response's headers and text, through the api handler."""
    from pgfleet.core.auth import LocalTokens
    from pgfleet.handlers.api import lambda_handler
    from pgfleet.local.gateway import build_event
    from pgfleet.local.lambda_context import LocalLambdaContext

    token = LocalTokens(fake_ports.settings.home).mint(role, tenant)
    event = build_event("GET", "/api/metrics", {"Authorization": f"Bearer {token}"}, b"", "127.0.0.1")
    resp = lambda_handler(event, LocalLambdaContext("test"))
    assert resp["statusCode"] == 200, resp
    return {k.lower(): v for k, v in resp["headers"].items()}, resp["body"]


def _samples(text: str) -> dict[str, list[Any]]:
    """Family name -> its samples, as Prometheus' own parser reads the text."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _value(families: dict[str, list[Any]], sample: str, /, **labels: str) -> float | None:
    """The value of the one sample named `sample` whose labels include `labels`, or None."""
    found = [
        s.value
        for samples in families.values()
        for s in samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_metrics_parse_and_the_request_counters_move(call, scheduled):
    instance_id = _instance(call, scheduled)
    headers, text = _scrape(scheduled)
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    route = {"route": "/api/v1/postgres/single/<instance_id>", "method": "GET", "status": "200"}
    before = _value(_samples(text), "pgfleet_api_requests_total", **route) or 0
    for _ in range(3):
        assert call("GET", f"{SINGLE}/{instance_id}")[0] == 200
    families = _samples(_scrape(scheduled)[1])
    assert _value(families, "pgfleet_api_requests_total", **route) == before + 3
    assert _value(families, "pgfleet_api_request_duration_seconds_count", **route) == before + 3
    assert "pgfleet_api_rate_limited" in families
    # the platform's series
    assert _value(families, "pgfleet_queue_messages", state="waiting") == 0
    assert _value(families, "pgfleet_operations", type="instance.create", status="succeeded") == 1
    # the server's series
    at = {"target_id": instance_id, "tenant_id": "acme", "kind": "instance"}
    assert _value(families, "pgfleet_server_info", name="orders-db", status="running", **at) == 1
    assert _value(families, "pgfleet_server_up", node=instance_id, **at) == 1
    assert _value(families, "pgfleet_server_is_primary", node=instance_id, **at) == 1
    assert _value(families, "pgfleet_server_connections", node=instance_id, state="total", **at) == 1
    assert _value(families, "pgfleet_server_max_connections", node=instance_id, **at) == 100
    assert _value(families, "pgfleet_server_database_size_bytes", **at) == 8e6
    age = _value(families, "pgfleet_server_last_backup_age_seconds", **at)
    assert age is not None and age >= 0


def test_a_tenant_scrape_holds_only_its_servers(call, scheduled):
    mine = _instance(call, scheduled)
    theirs = _instance(call, scheduled, "other-db", tenant="globex")
    _, text = _scrape(scheduled, role="viewer", tenant="acme")
    families = _samples(text)
    platform_wide = ("pgfleet_api_", "pgfleet_queue", "pgfleet_operations")
    assert families and not [name for name in families if name.startswith(platform_wide)]
    targets = {s.labels["target_id"] for samples in families.values() for s in samples}
    assert targets == {mine} and theirs not in text


def test_a_server_that_does_not_answer_is_down_and_a_stopped_one_is_not_asked(call, scheduled):
    dead = _instance(call, scheduled)
    stopped = _instance(call, scheduled, "stopped-db")
    assert call("POST", f"{SINGLE}/{stopped}/stop")[0] == 202
    scheduled.drain()
    scheduled.engine.servers[dead]["running"] = False
    families = _samples(_scrape(scheduled)[1])
    assert _value(families, "pgfleet_server_up", target_id=dead) == 0
    assert _value(families, "pgfleet_server_up", target_id=stopped) is None  # not expected to answer
    assert _value(families, "pgfleet_server_info", target_id=stopped, status="stopped") == 1
    # nothing is made up for what could not be read
    assert _value(families, "pgfleet_server_connections", target_id=dead, state="total") is None
    assert _value(families, "pgfleet_server_database_size_bytes", target_id=dead) is None


def test_a_cluster_has_a_series_per_node_and_per_replica(call, scheduled):
    status, body = call("POST", CLUSTERS, {"name": "ha-db"})
    assert status == 202, body
    scheduled.drain()
    families = _samples(_scrape(scheduled)[1])
    at = {"target_id": body["id"], "kind": "cluster"}
    nodes = ("n1", "n2", "n3")
    assert [_value(families, "pgfleet_server_up", node=n, **at) for n in nodes] == [1, 1, 1]
    assert [_value(families, "pgfleet_server_is_primary", node=n, **at) for n in nodes] == [1, 0, 0]
    assert _value(families, "pgfleet_server_database_size_bytes", **at) == 8e6
    lag = families["pgfleet_server_replication_lag_bytes"]
    assert sorted(s.labels["replica"] for s in lag if s.labels["target_id"] == body["id"]) == ["n2", "n3"]
