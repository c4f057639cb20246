"""Memory and CPU limits for local servers through cgroup v1.

Each server (or cluster node) gets its own group in the memory and cpu hierarchies:

    /sys/fs/cgroup/memory/pgfleet/<name>/memory.limit_in_bytes   = memory allowance
    /sys/fs/cgroup/cpu/pgfleet/<name>/cpu.cfs_quota_us           = cpu * cpu.cfs_period_us

Placing a server moves its postmaster first (every process it forks from then on inherits the
group) and then the processes it had already forked. The kernel then enforces the limits; the
PostgreSQL settings derived from the same allowance (see `tuning.py`) keep the server inside
them. Where the hierarchies are missing or not writable (no root, cgroup v2 only, a read-only
mount), nothing is changed and every call says so: the server then runs with the settings
alone, and callers put that reason in front of users.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/sys/fs/cgroup")
GROUP = "pgfleet"
CFS_PERIOD_US = 100_000
CONTROLLERS = ("memory", "cpu")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# cgroups=off in the environment turns enforcement off (settings only), e.g. on shared hosts.
ENV_SWITCH = "PGFLEET_CGROUPS"


@dataclass(frozen=True)
class LimitsOutcome:
    """What `place` achieved: `enforced` is False when only settings limit the server."""

    enforced: bool
    reason: str


class CgroupLimits:
    """cgroup v1 groups under `root`/<controller>/`group`/<name>. See the module docstring."""

    def __init__(self, root: Path = DEFAULT_ROOT, group: str = GROUP, enabled: bool | None = None) -> None:
        self._root = Path(root)
        self._group = group
        self._enabled = os.environ.get(ENV_SWITCH, "auto") != "off" if enabled is None else enabled

    def directory(self, controller: str, name: str) -> Path:
        """The group directory of `name` in `controller` (whether or not it exists)."""
        if not NAME_RE.match(name):
            raise ValueError(f"invalid cgroup name {name!r}")
        return self._root / controller / self._group / name

    def unavailable_reason(self) -> str | None:
        """None when limits can be enforced here, else why not (a sentence for users)."""
        if not self._enabled:
            return f"cgroup enforcement is turned off ({ENV_SWITCH}=off)"
        for controller in CONTROLLERS:
            base = self._root / controller
            if not (base / "cgroup.procs").is_file():
                return f"no cgroup v1 {controller} hierarchy at {base}"
            parent = base / self._group
            try:
                parent.mkdir(exist_ok=True)
            except OSError as exc:
                return f"cgroup v1 {controller} hierarchy is not writable ({exc.strerror or exc})"
            if not os.access(parent, os.W_OK):
                return f"cgroup v1 {controller} hierarchy is not writable"
        return None

    def place(self, name: str, memory_mb: int, cpu: float, pids: list[int]) -> LimitsOutcome:
        """Create or update the groups of `name` with these limits and move `pids` into them,
        the first one (the postmaster, or Patroni) first. Idempotent. Never raises for a host
        without cgroups: the outcome says the limits are settings only."""
        settings_only = (
            f"memory and CPU limited by PostgreSQL settings only: {{}} (memory {memory_mb} MB, {cpu:g} CPU)"
        )
        why_not = self.unavailable_reason()
        if why_not is not None:
            return LimitsOutcome(False, settings_only.format(why_not))
        try:
            memory = self.directory("memory", name)
            cpu_dir = self.directory("cpu", name)
            for directory in (memory, cpu_dir):
                directory.mkdir(exist_ok=True)
            notes = self._set_memory(memory, memory_mb * 1024 * 1024)
            _write(cpu_dir / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(cpu_dir / "cpu.cfs_quota_us", str(max(1000, int(cpu * CFS_PERIOD_US))))
            moved = 0
            for pid in pids:
                moved += all(self._move(directory, pid) for directory in (memory, cpu_dir))
        except OSError as exc:
            return LimitsOutcome(False, settings_only.format(f"cgroup write failed ({exc.strerror or exc})"))
        reason = (
            f"memory {memory_mb} MB and {cpu:g} CPU enforced by cgroup v1 "
            f"({self._group}/{name}, {moved} process(es) placed)"
        )
        return LimitsOutcome(True, f"{reason}; {notes}" if notes else reason)

    def release(self, name: str) -> str:
        """Remove the groups of `name`; processes still in them go back to the parent group
        (without limits). Idempotent."""
        removed = []
        for controller in CONTROLLERS:
            directory = self.directory(controller, name)
            if not directory.is_dir():
                continue
            for pid in self.pids(controller, name):
                self._move(directory.parent, pid)
            try:
                directory.rmdir()
                removed.append(controller)
            except OSError as exc:
                log.warning("could not remove cgroup %s: %s", directory, exc)
        return f"released cgroup(s) {', '.join(removed)} of {name}" if removed else f"no cgroup of {name}"

    def place_backend(
        self, name: str, pid: int, cpu_percent: float | None, io_mbps: float | None, data: Path
    ) -> tuple[list[str], list[str]]:
        """Move one backend of server `name` into groups of its own: `cpu/<group>/<name>/backend-<pid>`
        (a CFS quota of `cpu_percent` of one core, inside the server's own quota) and
        `blkio/<group>/<name>-backend-<pid>` (throttled reads and writes on the data
        directory's device; cgroup v1 throttles reads and direct writes, while buffered writes
        reach the device later from the kernel's flusher, outside the group). Returns (applied,
        not applied), sentences."""
        applied: list[str] = []
        missed: list[str] = []
        why_not = self.unavailable_reason()
        if why_not is not None:
            return [], [why_not] if (cpu_percent or io_mbps) else []
        if cpu_percent is not None:
            directory = self.directory("cpu", name) / f"backend-{pid}"
            try:
                directory.mkdir(exist_ok=True)
                _write(directory / "cpu.cfs_period_us", str(CFS_PERIOD_US))
                _write(directory / "cpu.cfs_quota_us", str(max(1000, int(cpu_percent / 100 * CFS_PERIOD_US))))
                self._move(directory, pid)
                applied.append(f"CPU {cpu_percent:g}% of one core (cgroup v1 cpu quota)")
            except OSError as exc:
                missed.append(f"CPU limit not applied: cgroup write failed ({exc.strerror or exc})")
        if io_mbps is not None:
            st = os.stat(data)
            device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
            directory = self._root / "blkio" / self._group / f"{name}-backend-{pid}"
            try:
                directory.parent.mkdir(exist_ok=True)
                directory.mkdir(exist_ok=True)
                rate = str(int(io_mbps * 1024 * 1024))
                _write(directory / "blkio.throttle.read_bps_device", f"{device} {rate}")
                _write(directory / "blkio.throttle.write_bps_device", f"{device} {rate}")
                self._move(directory, pid)
                applied.append(f"I/O {io_mbps:g} MB/s on device {device} (cgroup v1 blkio throttle)")
            except OSError as exc:
                missed.append(f"I/O limit not applied: cgroup blkio write failed ({exc.strerror or exc})")
        return applied, missed

    def release_backend(self, name: str, pid: int) -> None:
        """Put the backend back in its server's groups (if it still runs) and remove its own."""
        for directory, home in (
            (self.directory("cpu", name) / f"backend-{pid}", self.directory("cpu", name)),
            (self._root / "blkio" / self._group / f"{name}-backend-{pid}", self._root / "blkio"),
        ):
            if not directory.is_dir():
                continue
            with contextlib.suppress(OSError):
                self._move(home, pid)
            try:
                directory.rmdir()
            except OSError as exc:
                log.warning("could not remove cgroup %s: %s", directory, exc)

    def pids(self, controller: str, name: str) -> list[int]:
        """Processes in the group of `name` in `controller` (empty when it does not exist)."""
        try:
            text = (self.directory(controller, name) / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(line) for line in text.split() if line.isdigit()]

    def memory_limit_bytes(self, name: str) -> int | None:
        """The memory limit of `name`'s group, or None without one."""
        try:
            return int((self.directory("memory", name) / "memory.limit_in_bytes").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _set_memory(directory: Path, limit: int) -> str:
        """Set memory.limit_in_bytes. The kernel refuses (EBUSY) a limit below what the group
        holds now and cannot reclaim; the group then keeps its old limit until the next
        placement, which is said rather than raised."""
        try:
            _write(directory / "memory.limit_in_bytes", str(limit))
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            return f"memory limit not lowered yet: the group holds more than {limit // 2**20} MB"
        return ""

    @staticmethod
    def _move(directory: Path, pid: int) -> bool:
        try:
            _write(directory / "cgroup.procs", str(pid))
        except OSError as exc:
            # The process exited between listing and moving: nothing to limit.
            if exc.errno in (errno.ESRCH, errno.ENOENT):
                return False
            raise
        return True


def _write(path: Path, value: str) -> None:
    # One value per write(), as `echo value > file` does; errors (EBUSY, EINVAL, ESRCH) surface.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
