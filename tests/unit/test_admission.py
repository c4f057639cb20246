"""Admission limits through the api handler: what one tenant may hold, what the host can hold.

A refused request answers 409 with the limit it hits and changes nothing: no record, no port
or name claimed, no operation queued.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pgfleet.core.settings import TenantLimits
from pgfleet.ports.engine import HostCapacity

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"


def limit(fake_ports: Any, **limits: int) -> None:
    fake_ports.settings = dataclasses.replace(
        fake_ports.settings, tenant_limits=dataclasses.replace(TenantLimits(), **limits)
    )


def host(fake_ports: Any, memory_mb: int = 65536, disk_gb: float = 2000.0) -> None:
    fake_ports.engine.capacity = HostCapacity(65536, memory_mb, 2000.0, disk_gb)


def snapshot(fake_ports: Any) -> tuple[Any, ...]:
    store = fake_ports.store
    return (dict(store.records), dict(store.claims), list(fake_ports.queue.messages))


def refused(status: int, body: Any, code: str, limit_name: str) -> None:
    assert status == 409, body
    assert body["error"]["code"] == code, body
    details = body["error"]["details"]
    assert details.get("limit", details.get("resource")) == limit_name, body


def running(call: Any, fake_ports: Any, path: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    status, created = call("POST", path, body, **kw)
    assert status == 202, created
    fake_ports.drain()
    return dict(created)


def test_defaults_refuse_a_256_gb_64_cpu_instance(call, fake_ports):
    before = snapshot(fake_ports)
    status, body = call("POST", SINGLE, {"name": "huge-db", "memory": 262144, "cpu": 64})
    refused(status, body, "limit_exceeded", "memory_mb")
    assert "limit is 16384 MB of memory" in body["error"]["message"]
    assert body["error"]["details"]["setting"] == "PGFLEET_TENANT_MAX_MEMORY_MB"
    assert snapshot(fake_ports) == before
    status, body = call("POST", SINGLE, {"name": "huge-db", "cpu": 64})
    refused(status, body, "limit_exceeded", "cpu")
    assert snapshot(fake_ports) == before


def test_instance_count_limit_is_per_tenant_and_frees_on_delete(call, fake_ports):
    limit(fake_ports, instances=2)
    first = running(call, fake_ports, SINGLE, {"name": "one-db"})
    running(call, fake_ports, CLUSTERS, {"name": "two-db", "node_count": 1})
    before = snapshot(fake_ports)
    status, body = call("POST", SINGLE, {"name": "three-db"})
    refused(status, body, "limit_exceeded", "instances")
    assert body["error"]["details"] == {
        "limit": "instances", "max": 2, "in_use": 2, "requested": 1, "setting": "PGFLEET_TENANT_MAX_INSTANCES",
    }  # fmt: skip
    assert snapshot(fake_ports) == before
    assert call("POST", SINGLE, {"name": "three-db"}, tenant="globex")[0] == 202  # another tenant
    assert call("DELETE", f"{SINGLE}/{first['id']}")[0] == 202
    fake_ports.drain()
    assert call("POST", SINGLE, {"name": "three-db"})[0] == 202


def test_nodes_bound_clusters_and_the_ports_they_take(call, fake_ports):
    limit(fake_ports, nodes=10)
    running(call, fake_ports, CLUSTERS, {"name": "big-ha", "node_count": 9, "memory": 256})
    claimed = len(fake_ports.store.claims)
    status, body = call("POST", CLUSTERS, {"name": "more-ha", "node_count": 2, "memory": 256})
    refused(status, body, "limit_exceeded", "nodes")
    assert "to 11 node(s)" in body["error"]["message"] and "limit is 10 node(s)" in body["error"]["message"]
    assert len(fake_ports.store.claims) == claimed  # no port taken from the shared pool
    assert call("POST", SINGLE, {"name": "last-db", "memory": 256})[0] == 202  # the tenth node


def test_memory_cpu_and_storage_are_summed_over_every_node(call, fake_ports):
    limit(fake_ports, memory_mb=4096, cpu=6, storage_gb=100)
    running(
        call,
        fake_ports,
        CLUSTERS,
        {"name": "ha-db", "node_count": 3, "memory": 1024, "cpu": 2, "storage": 10},
    )
    status, body = call("POST", SINGLE, {"name": "big-db", "memory": 2048})
    refused(status, body, "limit_exceeded", "memory_mb")
    assert body["error"]["details"]["in_use"] == 3072
    status, body = call("POST", SINGLE, {"name": "cpu-db", "memory": 512, "cpu": 1})
    refused(status, body, "limit_exceeded", "cpu")
    limit(fake_ports, memory_mb=4096, cpu=7, storage_gb=100)
    status, body = call("POST", SINGLE, {"name": "disk-db", "memory": 512, "storage": 71})  # 30 GB held
    refused(status, body, "limit_exceeded", "storage_gb")
    assert call("POST", SINGLE, {"name": "disk-db", "memory": 512, "storage": 70})[0] == 202


def test_replicas_resize_and_scale_are_admitted_too(call, fake_ports):
    limit(fake_ports, memory_mb=4096, nodes=4)
    instance = running(call, fake_ports, SINGLE, {"name": "orders-db", "memory": 1024})
    before = snapshot(fake_ports)
    status, body = call("POST", f"{SINGLE}/{instance['id']}/replicas", {"replica_count": 2, "memory": 2048})
    refused(status, body, "limit_exceeded", "memory_mb")
    assert snapshot(fake_ports) == before
    status, body = call("POST", f"{SINGLE}/{instance['id']}/resize", {"memory": 8192})
    refused(status, body, "limit_exceeded", "memory_mb")
    _, got = call("GET", f"{SINGLE}/{instance['id']}")
    assert (got["status"], got["memory"]) == ("running", 1024)
    assert call("POST", f"{SINGLE}/{instance['id']}/resize", {"memory": 512, "cpu": 1})[0] == 202  # shrinks
    fake_ports.drain()

    cluster = running(call, fake_ports, CLUSTERS, {"name": "ha-db", "node_count": 2, "memory": 512})
    status, body = call("POST", f"{CLUSTERS}/{cluster['id']}/scale", {"node_count": 4})
    refused(status, body, "limit_exceeded", "nodes")  # 1 + 2 held, 2 more asked, at most 4
    status, body = call("POST", f"{CLUSTERS}/{cluster['id']}/resize", {"memory": 2048})
    refused(status, body, "limit_exceeded", "memory_mb")  # 2 x 1536 MB more on top of 1536 MB
    assert call("POST", f"{CLUSTERS}/{cluster['id']}/scale", {"node_count": 3})[0] == 202
    fake_ports.drain()
    assert call("POST", f"{CLUSTERS}/{cluster['id']}/scale", {"node_count": 1})[0] == 202  # scale in


@pytest.mark.parametrize(
    ("capacity", "body", "resource"),
    [
        ({"memory_mb": 3000}, {"name": "mem-db", "memory": 2048}, "memory_mb"),  # 2048 + 1024 headroom
        ({"disk_gb": 14.0}, {"name": "disk-db", "storage": 10}, "storage_gb"),  # 10 + 5 headroom
    ],
)
def test_the_host_must_hold_the_request_with_headroom(call, fake_ports, capacity, body, resource):
    host(fake_ports, **capacity)
    before = snapshot(fake_ports)
    status, got = call("POST", SINGLE, body)
    refused(status, got, "insufficient_capacity", resource)
    assert "the host cannot hold instance" in got["error"]["message"]
    assert snapshot(fake_ports) == before
    host(fake_ports)
    assert call("POST", SINGLE, body)[0] == 202


def test_the_host_is_checked_for_clusters_replicas_and_resizes(call, fake_ports):
    instance = running(call, fake_ports, SINGLE, {"name": "orders-db", "memory": 1024})
    host(fake_ports, memory_mb=3500)  # room for 2476 MB more
    status, body = call("POST", CLUSTERS, {"name": "ha-db", "node_count": 3, "memory": 1024})
    refused(status, body, "insufficient_capacity", "memory_mb")
    status, body = call("POST", f"{SINGLE}/{instance['id']}/replicas", {"replica_count": 3, "memory": 1024})
    refused(status, body, "insufficient_capacity", "memory_mb")
    status, body = call("POST", f"{SINGLE}/{instance['id']}/resize", {"memory": 4096})
    refused(status, body, "insufficient_capacity", "memory_mb")
    assert call("POST", f"{SINGLE}/{instance['id']}/resize", {"memory": 3072})[0] == 202  # 2048 more


def test_an_engine_without_a_shared_host_checks_only_the_tenant(call, fake_ports):
    fake_ports.engine.capacity = None
    assert call("POST", SINGLE, {"name": "orders-db", "memory": 16384})[0] == 202


def test_the_local_engine_measures_free_memory_and_the_disk_of_its_data(tmp_path):
    from pgfleet.adapters.engines.local.host_capacity import measure

    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:       24683652 kB\nMemFree:  1000 kB\nMemAvailable:   3145728 kB\nHugePages_Total: 0\n"
    )
    got = measure(tmp_path, meminfo)
    assert (got.memory_total_mb, got.memory_available_mb) == (24105, 3072)
    assert 0 < got.disk_free_gb <= got.disk_total_gb
    meminfo.write_text("MemTotal: 2048 kB\nMemFree: 1024 kB\n")  # kernels without MemAvailable
    assert measure(tmp_path, meminfo).memory_available_mb == 1
