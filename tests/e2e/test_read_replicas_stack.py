"""Read replicas of a single instance, against the real local stack: a user adds a replica,
reads the instance's rows from it with the instance's credentials, watches its lag, and
deletes it."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.helpers import LocalStack, running_stack, wait_for

SINGLE = "/api/v1/postgres/single"


def connect(uri: str, endpoint: dict[str, Any] | None = None) -> psycopg.Connection:
    """Connect with the instance's credentials, to `endpoint` instead of the instance's own
    when given (a replica's)."""
    params = conninfo_to_dict(uri)
    if endpoint is not None:
        params.update(host=endpoint["host"], port=str(endpoint["port"]))
    return psycopg.connect(**params, connect_timeout=3, autocommit=True)


def count_on(uri: str, endpoint: dict[str, Any]) -> int:
    with connect(uri, endpoint) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
    return int(row[0]) if row else 0


def create_instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, instance = stack.request("POST", SINGLE, {"name": "shop-db"}, token)
    assert status == 202, instance
    stack.wait_operation(instance["operation_id"], token)
    with connect(instance["credentials"]["uri"]) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
        conn.execute("INSERT INTO orders VALUES (1, 'widget'), (2, 'gadget')")
    return instance


def test_read_replica_walkthrough() -> None:
    with running_stack("pgfleet-replicas-e2e-") as stack:
        operator = stack.token("operator", "acme")
        instance = create_instance(stack, operator)
        iid, uri = instance["id"], instance["credentials"]["uri"]
        replicas_path = f"{SINGLE}/{iid}/replicas"

        started = time.monotonic()
        status, body = stack.request(
            "POST", replicas_path, {"replica_count": 1, "cpu": 1, "memory": 512}, operator
        )
        assert status == 202, body
        (replica,) = body["replicas"]
        assert replica["status"] == "creating" and replica["name"] == "shop-db-replica-1"
        stack.wait_operation(body["operation_ids"][0], operator)
        print(f"\nreplica created in {time.monotonic() - started:.1f}s (request to running)")

        endpoint = replica["endpoint"]
        assert endpoint["port"] != instance["endpoint"]["port"]
        with connect(uri, endpoint) as conn:
            assert conn.execute("SELECT id, item FROM orders ORDER BY id").fetchall() == [
                (1, "widget"),
                (2, "gadget"),
            ]
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("INSERT INTO orders VALUES (3, 'refused')")

        with connect(uri) as conn:
            conn.execute("INSERT INTO orders SELECT g, 'bulk' FROM generate_series(3, 502) g")
        wait_for(lambda: count_on(uri, endpoint) == 502, timeout=15, what="new rows on the replica")
        status, listing = stack.request("GET", replicas_path, token=operator)
        assert status == 200, listing
        (listed,) = listing["replicas"]
        assert listed["id"] == replica["id"] and listed["status"] == "running"
        assert listed["state"] == "streaming" and isinstance(listed["lag_bytes"], int)
        assert listed["lag_bytes"] >= 0 and listed["lag_seconds"] is not None

        other_tenant = stack.token("operator", "globex")
        assert stack.request("GET", replicas_path, token=other_tenant)[0] == 404

        status, deleting = stack.request("DELETE", f"{replicas_path}/{replica['id']}", token=operator)
        assert status == 202 and deleting["status"] == "deleting", deleting
        stack.wait_operation(deleting["operation_id"], operator)
        assert stack.request("GET", replicas_path, token=operator) == (200, {"replicas": []})
        assert not (stack.home / "data" / "servers" / replica["id"]).exists()
        with pytest.raises(psycopg.OperationalError):
            connect(uri, endpoint)
        # The instance keeps its rows and no longer keeps WAL for the replica.
        assert count_on(uri, instance["endpoint"]) == 502
        with connect(uri) as conn:
            assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
