"""What the local host has free: memory from /proc/meminfo, disk from the filesystem that
holds the data directories. Read on each call (cheap), so admission sees the host as it is."""

from __future__ import annotations

import shutil
from pathlib import Path

from pgfleet.ports.engine import HostCapacity

MEMINFO = Path("/proc/meminfo")
GB = 1024**3


def meminfo(path: Path = MEMINFO) -> dict[str, int]:
    """/proc/meminfo as {field: kB}."""
    fields = {}
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(":")
        value = rest.split()
        if value and value[0].isdigit():
            fields[name.strip()] = int(value[0])
    return fields


def measure(data_dir: Path, meminfo_path: Path = MEMINFO) -> HostCapacity:
    """Free memory (MemAvailable: what new processes can take without swapping; MemFree on
    kernels before 3.14) and the free disk of `data_dir`'s filesystem."""
    memory = meminfo(meminfo_path)
    disk = shutil.disk_usage(data_dir)
    return HostCapacity(
        memory_total_mb=memory["MemTotal"] // 1024,
        memory_available_mb=memory.get("MemAvailable", memory["MemFree"]) // 1024,
        disk_total_gb=disk.total / GB,
        disk_free_gb=disk.free / GB,
    )
