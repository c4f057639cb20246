"""What the local host has free: memory from /proc/meminfo, disk from the filesystem that
holds the data directories. Read on each call (cheap), so admission sees the host as it is."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from pgfleet.ports.engine import HostCapacity

MEMINFO = Path("/proc/meminfo")
PROC_STAT = Path("/proc/stat")
CPU_SAMPLE_SECONDS = 0.2
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


def _cpu_times(path: Path = PROC_STAT) -> tuple[int, int]:
    """(busy, total) jiffies of every CPU since boot, from the first line of /proc/stat."""
    fields = [int(x) for x in path.read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy_percent(seconds: float = CPU_SAMPLE_SECONDS) -> float | None:
    """How busy the host's CPUs were over a short sample (0-100), None where /proc is not there."""
    try:
        busy0, total0 = _cpu_times()
        time.sleep(seconds)
        busy1, total1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    return round(100.0 * (busy1 - busy0) / (total1 - total0), 2) if total1 > total0 else None


def measure(data_dir: Path, meminfo_path: Path = MEMINFO, cpu: bool = False) -> HostCapacity:
    """Free memory (MemAvailable: what new processes can take without swapping; MemFree on
    kernels before 3.14) and the free disk of `data_dir`'s filesystem."""
    memory = meminfo(meminfo_path)
    disk = shutil.disk_usage(data_dir)
    return HostCapacity(
        memory_total_mb=memory["MemTotal"] // 1024,
        memory_available_mb=memory.get("MemAvailable", memory["MemFree"]) // 1024,
        disk_total_gb=disk.total / GB,
        disk_free_gb=disk.free / GB,
        cpu_count=os.cpu_count(),
        cpu_busy_percent=cpu_busy_percent() if cpu else None,
    )
