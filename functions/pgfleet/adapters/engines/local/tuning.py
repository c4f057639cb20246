"""PostgreSQL settings derived from a server's memory and CPU allowance.

Pure functions: no I/O, so they are unit-tested directly and reused by any engine that
writes PostgreSQL configuration. Values are strings in PostgreSQL's own units ("256MB",
"4096kB") so they can be written to a configuration file as they are.
"""

from __future__ import annotations

import math

# Below this, PostgreSQL itself (catalog caches, WAL buffers, one backend per connection)
# leaves too little room for the settings to mean anything; we still produce valid values.
MIN_MEMORY_MB = 64

MAX_CONNECTIONS_FLOOR = 20
MAX_CONNECTIONS_CEILING = 500

# work_mem is per sort/hash node, and one query can run several of them: assume up to three
# per connection when splitting the memory left after shared_buffers.
WORK_MEM_NODES_PER_CONNECTION = 3
WORK_MEM_MIN_KB = 1024
WORK_MEM_MAX_KB = 256 * 1024

MAINTENANCE_WORK_MEM_MIN_MB = 16
MAINTENANCE_WORK_MEM_MAX_MB = 2048

# Background workers are also used by logical replication and extensions, so never go below
# PostgreSQL's default of 8 slots even on a small CPU allowance.
MIN_WORKER_PROCESSES = 8


def cores_for(cpu: float) -> int:
    """Whole cores from a fractional CPU allowance (0.5 CPU still runs one process)."""
    return max(1, math.ceil(cpu))


def max_connections_for(memory_mb: int) -> int:
    """One connection per 10 MB of memory, between 20 and 500."""
    return min(MAX_CONNECTIONS_CEILING, max(MAX_CONNECTIONS_FLOOR, memory_mb // 10))


def settings_for(memory_mb: int, cpu: float) -> dict[str, str]:
    """PostgreSQL settings sized for `memory_mb` of memory and `cpu` CPUs.

    shared_buffers is 25% of memory and effective_cache_size 75%; work_mem splits what is
    left after shared_buffers across the connections; parallelism follows the CPU count.
    Raises ValueError for a non-positive memory or CPU allowance.
    """
    if memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb}")
    if cpu <= 0:
        raise ValueError(f"cpu must be positive, got {cpu}")

    memory = max(MIN_MEMORY_MB, memory_mb)
    shared_buffers_mb = memory // 4
    effective_cache_mb = memory * 3 // 4
    connections = max_connections_for(memory)
    work_mem_kb = (memory - shared_buffers_mb) * 1024 // (connections * WORK_MEM_NODES_PER_CONNECTION)
    work_mem_kb = min(WORK_MEM_MAX_KB, max(WORK_MEM_MIN_KB, work_mem_kb))
    maintenance_mb = min(MAINTENANCE_WORK_MEM_MAX_MB, max(MAINTENANCE_WORK_MEM_MIN_MB, memory // 16))

    cores = cores_for(cpu)
    # One core cannot usefully run a query in parallel with itself: disable parallel plans
    # there rather than let them compete with the leader.
    per_gather = min(4, cores // 2)

    return {
        "shared_buffers": f"{shared_buffers_mb}MB",
        "effective_cache_size": f"{effective_cache_mb}MB",
        "work_mem": f"{work_mem_kb}kB",
        "maintenance_work_mem": f"{maintenance_mb}MB",
        "max_connections": str(connections),
        "max_worker_processes": str(max(MIN_WORKER_PROCESSES, cores)),
        "max_parallel_workers": str(cores),
        "max_parallel_workers_per_gather": str(per_gather),
        "max_parallel_maintenance_workers": str(per_gather),
    }
