"""TCP port reservations, so two servers never collide.

A port is claimed in the metadata store (atomic across every process of the control plane)
and checked free on the host; ports of deleted servers return to the pool.
"""

from __future__ import annotations

import os
import secrets

from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict

PORT_RANGE = range(
    int(os.environ.get("PGFLEET_PORT_BASE", "16000")), int(os.environ.get("PGFLEET_PORT_LIMIT", "19000"))
)


def _key(port: int) -> str:
    return f"port#{port}"


def reserve(ports: Ports, owner: str, count: int = 1) -> list[int]:
    """Reserve `count` ports for `owner`. Raises Conflict when the range is exhausted."""
    got: list[int] = []
    # Start at a random place so concurrent creates rarely race for the same port.
    start = secrets.randbelow(len(PORT_RANGE))
    for port in [*PORT_RANGE[start:], *PORT_RANGE[:start]]:
        if len(got) == count:
            break
        if not ports.engine.port_available(port):
            continue
        if ports.store.claim(_key(port), owner):
            got.append(port)
    if len(got) < count:
        for port in got:
            release(ports, port, owner)
        raise Conflict("no free port left in the pgfleet port range")
    return got


def release(ports: Ports, port: int, owner: str) -> None:
    ports.store.release(_key(port), owner)
