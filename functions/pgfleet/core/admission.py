"""Admission: what one tenant may hold, and what the host can still hold.

Every request that makes a tenant hold more (create an instance or a cluster, add replicas,
scale a cluster out, resize up) asks `admit` first, before anything is reserved or stored.
It refuses with 409 and a reason naming the limit:
- `limit_exceeded`: the tenant would hold more than `settings.tenant_limits` allows, summed
  over its instances, clusters (every node) and read replicas as the metadata store holds
  them, whatever their status (a paused or failed server still holds its storage, its ports
  and its place);
- `insufficient_capacity`: the host has not got the memory or the disk the request asks for,
  plus the configured headroom, free now (`Engine.host_capacity`). Memory is compared with
  what the host can still give (MemAvailable), disk with the free space of the filesystem
  of the data directories; storage is a limit the server may fill, so the host must be able
  to hold it filled.

Two concurrent requests of one tenant may both be admitted just under a limit; the limits
bound what a tenant takes, they are not a reservation system.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

from pgfleet.core.context import Ports
from pgfleet.core.errors import InsufficientCapacity, LimitExceeded
from pgfleet.core.settings import TenantLimits

# Record kinds that hold servers; whether each counts towards the `instances` limit.
HOLDING_KINDS = {"instance": True, "cluster": True, "replica": False}
UNITS = {"instances": " instance(s) and cluster(s)", "nodes": " node(s)", "memory_mb": " MB of memory", "cpu": " CPU",
         "storage_gb": " GB of storage"}  # fmt: skip


@dataclass(frozen=True)
class Demand:
    """What a request adds to what a tenant holds (negative: gives back)."""

    instances: int = 0
    nodes: int = 0
    memory_mb: int = 0
    cpu: int = 0
    storage_gb: int = 0

    @classmethod
    def servers(cls, count: int, *, cpu: int, memory_mb: int, storage_gb: int, instance: bool) -> Demand:
        """`count` servers of one size (a cluster's nodes, replicas); one instance or cluster
        when `instance`."""
        return cls(
            instances=int(instance),
            nodes=count,
            memory_mb=count * memory_mb,
            cpu=count * cpu,
            storage_gb=count * storage_gb,
        )

    def __add__(self, other: Demand) -> Demand:
        return Demand(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __sub__(self, other: Demand) -> Demand:
        return Demand(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})


def held_by(kind: str, record: dict[str, Any]) -> Demand:
    """What one record holds: a cluster one server per node, the others one server."""
    nodes = len(record.get("nodes") or ()) if kind == "cluster" else 1
    return Demand.servers(
        nodes,
        cpu=int(record.get("cpu") or 0),
        memory_mb=int(record.get("memory") or 0),
        storage_gb=int(record.get("storage") or 0),
        instance=HOLDING_KINDS[kind],
    )


def _records(ports: Ports, kind: str, tenant: str) -> Iterator[dict[str, Any]]:
    token = None
    while True:
        page, token = ports.store.list(kind, tenant_id=tenant, limit=100, next_token=token)
        yield from page
        if not token:
            return


def tenant_usage(ports: Ports, tenant: str) -> Demand:
    """What the tenant holds now, summed over every server-holding record it owns."""
    total = Demand()
    for kind in HOLDING_KINDS:
        for record in _records(ports, kind, tenant):
            total += held_by(kind, record)
    return total


def admit(ports: Ports, tenant: str, demand: Demand, what: str) -> None:
    """Refuse (409) a request for `what` (e.g. "instance orders-db") that would take `tenant`
    past one of its limits or that the host cannot hold. Only what the request adds is
    checked: a request that gives back (a smaller size) is never refused here."""
    if all(getattr(demand, f.name) <= 0 for f in fields(demand)):
        return
    _check_tenant(ports, tenant, demand, what)
    _check_host(ports, demand, what)


def _check_tenant(ports: Ports, tenant: str, demand: Demand, what: str) -> None:
    limits = ports.settings.tenant_limits
    usage = tenant_usage(ports, tenant)
    for f in fields(demand):
        asked, held, most = getattr(demand, f.name), getattr(usage, f.name), getattr(limits, f.name)
        if asked > 0 and held + asked > most:
            unit = UNITS[f.name]
            raise LimitExceeded(
                f"{what} would take tenant {tenant} to {held + asked}{unit}"
                f" (it holds {held}{unit}, the request adds {asked}); the limit is {most}{unit}",
                details={
                    "limit": f.name,
                    "max": most,
                    "in_use": held,
                    "requested": asked,
                    "setting": TenantLimits.env_name(f.name),
                },
            )


def _check_host(ports: Ports, demand: Demand, what: str) -> None:
    capacity = ports.engine.host_capacity()
    if capacity is None:
        return
    settings = ports.settings
    checks = (
        ("memory_mb", demand.memory_mb, capacity.memory_available_mb, settings.host_memory_headroom_mb,
         "MB of memory", "PGFLEET_HOST_MEMORY_HEADROOM_MB"),
        ("storage_gb", demand.storage_gb, capacity.disk_free_gb, settings.host_disk_headroom_gb,
         "GB of disk", "PGFLEET_HOST_DISK_HEADROOM_GB"),
    )  # fmt: skip
    for resource, asked, free, headroom, unit, setting in checks:
        if asked > 0 and asked + headroom > free:
            raise InsufficientCapacity(
                f"the host cannot hold {what}: it asks for {asked} {unit}, the host has "
                f"{free:.0f} {unit} free and keeps {headroom} {unit} in reserve",
                details={
                    "resource": resource,
                    "requested": asked,
                    "free": round(free, 1),
                    "headroom": headroom,
                    "setting": setting,
                },
            )
