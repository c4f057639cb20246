"""connections/configure without a server: the max_connections rule and the pooler's checks
(422 naming the limit, 409 on a stopped server, 404 for another tenant's, 403 for a viewer),
the operation it starts, the `pooler` the instance object shows, the pooler URI shown once,
and reconcile restarting a pooler that should run. The role, PgBouncer and the SQL run for
real in tests/integration/test_pgbouncer.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from pgfleet.domains.performance import pooling

SINGLE = "/api/v1/postgres/single"
CONFIGURE = "/api/v1/performance/connections/configure"


class _NoSql:
    """The pooler_role step's session: accepts every statement, finds no role."""

    @contextlib.contextmanager
    def session(self, server_id: str, **_: Any) -> Iterator[Any]:
        class Session:
            def execute(self, *_: Any) -> None: ...

            def fetch_one(self, *_: Any) -> None:
                return None

        yield Session()


@pytest.fixture
def instance(call: Any, fake_ports: Any) -> dict[str, Any]:
    status, body = call("POST", SINGLE, {"name": "orders-db", "memory": 1024})
    assert status == 202, body
    fake_ports.drain()
    fake_ports.sql = _NoSql()
    return body


def _pooler(**changes: Any) -> dict[str, Any]:
    return {"poolMode": "transaction", "maxClientConnections": 200, "defaultPoolSize": 10, **changes}


def test_max_connections_is_checked_against_memory(call: Any, instance: dict[str, Any]) -> None:
    status, body = call("POST", CONFIGURE, {"targetId": instance["id"], "maxConnections": 500})
    assert status == 422, body
    assert body["error"]["details"]["maximum"] == 102  # one per 10 MB of 1024 MB
    assert "102" in body["error"]["message"]
    status, body = call("POST", CONFIGURE, {"targetId": instance["id"], "maxConnections": 12})
    assert status == 422 and body["error"]["details"]["minimum"] == 13
    # A pooler's pool must fit too.
    status, body = call("POST", CONFIGURE, {"targetId": instance["id"], "maxConnections": 20,
                                            "poolerConfiguration": _pooler(defaultPoolSize=18)})  # fmt: skip
    assert status == 422 and body["error"]["details"]["minimum"] == 22  # 18 + 1 lookup + 3 reserved


def test_pool_over_its_clients_or_empty_request_is_422(call: Any, instance: dict[str, Any]) -> None:
    bad = _pooler(defaultPoolSize=50, maxClientConnections=20)
    status, body = call("POST", CONFIGURE, {"targetId": instance["id"], "poolerConfiguration": bad})
    assert status == 422 and "maxClientConnections" in str(body)
    assert call("POST", CONFIGURE, {"targetId": instance["id"]})[0] == 422
    assert (
        call("POST", CONFIGURE, {"targetId": instance["id"], "poolerConfiguration": _pooler(poolMode="x")})[0]
        == 422
    )
    assert call("POST", CONFIGURE, {"targetId": "nope", "maxConnections": 50})[0] == 422


def test_permissions_scope_and_state(call: Any, fake_ports: Any, instance: dict[str, Any]) -> None:
    body = {"targetId": instance["id"], "poolerConfiguration": _pooler()}
    assert call("POST", CONFIGURE, body, role="viewer")[0] == 403
    assert call("POST", CONFIGURE, body, role=None)[0] == 401
    assert call("POST", CONFIGURE, body, tenant="globex")[0] == 404
    assert call("POST", f"{SINGLE}/{instance['id']}/stop")[0] == 202
    fake_ports.drain()
    status, answer = call("POST", CONFIGURE, body)
    assert status == 409 and answer["error"]["details"]["status"] == "stopped"


def test_pooler_runs_shows_on_the_instance_and_its_uri_comes_once(
    call: Any, fake_ports: Any, instance: dict[str, Any]
) -> None:
    status, body = call("POST", CONFIGURE, {"targetId": instance["id"], "poolerConfiguration": _pooler()})
    assert status == 202, body
    port = body["pooler"]["port"]
    password = instance["credentials"]["password"]
    assert body["credentials"]["poolerUri"] == f"postgresql://app_admin:{password}@127.0.0.1:{port}/app"
    assert body["restartRequired"] is False and body["operationId"]
    fake_ports.drain()
    op = call("GET", f"/api/v1/operations/{body['operationId']}")[1]
    assert op["status"] == "succeeded", op
    spec = fake_ports.pooler.specs[instance["id"]]
    assert (spec.pool_mode, spec.default_pool_size, spec.max_client_connections) == ("transaction", 10, 200)
    assert spec.backend_port == instance["endpoint"]["port"] and spec.auth_user == "pgfleet_pooler"
    assert fake_ports.secrets.get(pooling.secret_name(instance["id"]))
    shown = call("GET", f"{SINGLE}/{instance['id']}")[1]
    assert shown["pooler"]["port"] == port and shown["pooler"]["status"] == "running"
    assert shown["pooler"]["pool_mode"] == "transaction" and "credentials" not in shown
    # Reconfiguring keeps the port; turning it off removes it and frees the port.
    status, again = call("POST", CONFIGURE, {"targetId": instance["id"],
                                             "poolerConfiguration": _pooler(poolMode="session")})  # fmt: skip
    assert status == 202 and again["pooler"]["port"] == port
    fake_ports.drain()
    assert fake_ports.pooler.specs[instance["id"]].pool_mode == "session"
    status, off = call(
        "POST", CONFIGURE, {"targetId": instance["id"], "poolerConfiguration": {"enabled": False}}
    )
    assert status == 202 and off["pooler"] is None and off["credentials"] is None
    fake_ports.drain()
    assert instance["id"] not in fake_ports.pooler.specs
    assert call("GET", f"{SINGLE}/{instance['id']}")[1]["pooler"] is None
    assert fake_ports.store.claimed(f"port#{port}") is None


def test_max_connections_restarts_as_an_operation(
    call: Any, fake_ports: Any, instance: dict[str, Any]
) -> None:
    status, body = call("POST", CONFIGURE, {"targetId": instance["id"], "maxConnections": 80})
    assert status == 202 and body["restartRequired"] is True and body["maxConnections"] == 80
    assert call("GET", f"{SINGLE}/{instance['id']}")[1]["status"] == "restarting"
    fake_ports.drain()
    op = call("GET", f"/api/v1/operations/{body['operationId']}")[1]
    assert op["status"] == "succeeded", op
    assert [s["name"] for s in op["steps"]][:2] == ["apply_max_connections", "restart"]
    record = fake_ports.store.get("instance", instance["id"])
    assert record["settings"]["max_connections"] == "80" and record["status"] == "running"


def test_reconcile_restarts_a_dead_pooler_and_delete_removes_it(
    call: Any, fake_ports: Any, instance: dict[str, Any]
) -> None:
    from pgfleet.domains.reconcile import service as reconcile

    body = call("POST", CONFIGURE, {"targetId": instance["id"], "poolerConfiguration": _pooler()})[1]
    fake_ports.drain()
    fake_ports.pooler.running.discard(instance["id"])  # kill -9
    lines = reconcile.run(fake_ports)
    assert any("pgbouncer was not running" in line for line in lines), lines
    assert instance["id"] in fake_ports.pooler.running
    reason = fake_ports.store.get("instance", instance["id"])["pooler"]["status_reason"]
    assert reason.startswith("reconcile at")
    assert not [line for line in reconcile.run(fake_ports) if "pooler" in line or "pgbouncer" in line]
    # A stopped instance: its pooler stops too.
    assert call("POST", f"{SINGLE}/{instance['id']}/stop")[0] == 202
    fake_ports.drain()
    reconcile.run(fake_ports)
    assert instance["id"] not in fake_ports.pooler.running
    assert fake_ports.store.get("instance", instance["id"])["pooler"]["status"] == "stopped"
    assert call("DELETE", f"{SINGLE}/{instance['id']}")[0] == 202
    fake_ports.drain()
    assert instance["id"] not in fake_ports.pooler.specs
    assert fake_ports.store.claimed(f"port#{body['pooler']['port']}") is None


def test_scram_verifier_has_postgres_format() -> None:
    text = pooling.scram_verifier("secret")
    assert text.startswith("SCRAM-SHA-256$4096:") and text.count("$") == 2 and ":" in text.split("$")[2]


def test_a_cluster_pools_onto_its_primary_and_follows_it(call: Any, fake_ports: Any) -> None:
    from pgfleet.domains.reconcile import service as reconcile

    # 5 GB: the engine's default max_connections is its ceiling (500), the limit 512.
    status, cluster = call("POST", "/api/v1/postgres/cluster", {"name": "ha-db", "memory": 5120})
    assert status == 202, cluster
    fake_ports.drain()
    fake_ports.sql = _NoSql()
    cid = cluster["id"]
    status, body = call(
        "POST", CONFIGURE, {"targetId": cid, "maxConnections": 510, "poolerConfiguration": _pooler()}
    )
    assert status == 202 and body["restartRequired"] is True, body
    fake_ports.drain()
    op = call("GET", f"/api/v1/operations/{body['operationId']}")[1]
    assert op["status"] == "succeeded", op
    engine = fake_ports.cluster_engine
    assert engine.restarts[-1] == (cid, "n1")  # replicas first, the primary last
    got = call("GET", f"/api/v1/postgres/cluster/{cid}")[1]
    primary = next(n for n in got["nodes"] if n["id"] == got["primary"])
    assert fake_ports.pooler.specs[cid].backend_port == primary["endpoint"]["port"]
    assert got["pooler"]["status"] == "running" and got["status"] == "running"
    # Lowering max_connections of a cluster is refused, naming the current value.
    status, refused = call("POST", CONFIGURE, {"targetId": cid, "maxConnections": 505})
    assert status == 422 and refused["error"]["details"]["minimum"] == 510
    # A failover (Patroni picked n2): reconcile points the pooler at the new primary.
    engine.leader[cid] = "n2"
    lines = reconcile.run(fake_ports)
    assert any("configuration changed" in line for line in lines), lines
    got = call("GET", f"/api/v1/postgres/cluster/{cid}")[1]
    primary = next(n for n in got["nodes"] if n["id"] == got["primary"])
    assert got["primary"] == "n2"
    assert fake_ports.pooler.specs[cid].backend_port == primary["endpoint"]["port"]
