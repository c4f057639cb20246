"""The metric capture: every minute, one sample per server that runs or should run, stored in
the history stream `metrics` (see samples.py for the keys), then handed to the alert rules.

What is sampled: a server whose status is running, or whose desired state is running while
it is not on its way somewhere (a failed server, one restarting, resizing, upgrading). A
server that does not answer still gets a sample: `up` False, with what is known without it
(its status, its last backup, its cluster's leader), so that "down for 2 samples" can fire.
Stopped, paused, being created or deleted: not sampled.

How each value is measured:
- one privileged session through the SQL seam on the instance, or on the cluster's leader
  (named by Patroni): sessions, the counters of every database, sizes, wraparound, WAL
  position, timeline, blockers (sql.SERVER), checkpoints (pg_stat_checkpointer from 17,
  pg_stat_bgwriter before), and every standby's replay lag (sql.REPLICATION);
- rates are deltas against the target's newest sample of the last PREVIOUS_WINDOW: a counter
  lower than before means the server restarted (its statistics reset): that rate is None;
- CPU and memory from the server's processes on this host, found from the session's own
  backend (its parent is the postmaster, whose working directory must be the server's data
  directory): memory from its cgroup v1 group (`memory.usage_in_bytes`) when the engine placed
  it in one under `pgfleet/`, else the proportional set size (Pss, or RSS where smaps cannot be
  read) of the postmaster and its children; CPU time (`cpu_seconds`, cumulative) from
  `cpuacct.usage` of its group when there is one, else utime + stime of the postmaster, its
  live children and the children it has reaped (cutime + cstime). `cpu_percent` is the CPU
  time of the interval over its wall time (100 = one CPU). A server on another host (no such
  process here) has None for all three;
- the last backup from the resource's backup records (the newest completed physical backup).

A server's first sample of a new hour also writes the hour chunk of the hour before
(metrics.HOUR_STREAM: its metric values as one record), which the metrics endpoint reads
instead of 60 samples.

Servers are sampled side by side (at most CAPTURE_WORKERS at a time); one that fails gives
`up` False and its `error`, never stopping the others.

The schedule fires every minute for the whole fleet; a tenant that asked for a longer capture
interval (section MONITORING of the system configuration, `captureIntervalMinutes`) has its
servers skipped until their newest sample is that old (`due`), and its samples are kept for
its `metricRetentionDays` (their TTL).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pgfleet.core import tenant_settings
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError
from pgfleet.domains import archive, clusters, servers
from pgfleet.domains.monitoring import metrics, rules, sql
from pgfleet.domains.monitoring.samples import STREAM, Sample
from pgfleet.ports.history import HistoryRecord
from pgfleet.ports.scheduler import Schedule

log = logging.getLogger(__name__)

CAPTURE_TASK = "monitoring"
CAPTURE_SCHEDULE = Schedule(
    name="pgfleet-monitoring-capture", expression="rate(1 minute)", payload={"task": CAPTURE_TASK}
)
SAMPLE_TTL_SECONDS = metrics.SAMPLE_TTL_SECONDS
PREVIOUS_WINDOW = timedelta(minutes=10)
RECENT_WINDOW = timedelta(minutes=2, seconds=30)
CAPTURE_WORKERS = 16
# A tenant's capture interval (minutes): 1 is the schedule's own rate. At most 5, so that the
# next sample still finds its previous one within PREVIOUS_WINDOW (rates need it) even when
# one capture is missed.
CAPTURE_INTERVAL_MINUTES = 1
MAX_CAPTURE_INTERVAL_MINUTES = 5
# A sample taken this much less than the interval ago counts as due: the ticker fires about
# once a minute, never exactly.
INTERVAL_SLACK = timedelta(seconds=30)
# A capture must not hang on one server: every statement is short.
STATEMENT_TIMEOUT_MS = 5_000
LOCK_TIMEOUT_MS = 1_000
XID_LIMIT = metrics.XID_LIMIT
# Not sampled: a server stopped or paused on purpose, or on its way in, out or down.
NOT_SAMPLED = frozenset({"creating", "stopping", "stopped", "pausing", "paused", "deleting", "deleted"})
PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_GROUP = "/pgfleet/"

# The keys of samples.py, in its order (`error` and `cpu_seconds` besides: see the module docstring).
KEYS = (
    "up", "status", "connections_active", "connections_idle", "connections_idle_in_transaction",
    "connections_total", "connections_max", "xact_commit", "xact_rollback", "blks_hit", "blks_read",
    "temp_bytes", "deadlocks", "wal_bytes", "checkpoints", "commits_per_second", "rollbacks_per_second",
    "rollback_ratio", "cache_hit_ratio", "temp_bytes_per_second", "deadlocks_per_minute",
    "wal_bytes_per_second", "checkpoints_per_minute", "database_size_bytes", "replication",
    "replication_lag_bytes_max", "replication_lag_seconds_max", "oldest_xact_age_seconds",
    "idle_in_transaction_max_seconds", "xid_age", "xid_remaining", "last_backup_at",
    "last_backup_age_seconds", "cpu_percent", "memory_bytes", "resource_source", "timeline", "primary",
    "blocking_sessions", "cpu_seconds", "error",
)  # fmt: skip
# counter -> (rate key, seconds per unit of the rate)
RATES = {
    "xact_commit": ("commits_per_second", 1.0),
    "xact_rollback": ("rollbacks_per_second", 1.0),
    "temp_bytes": ("temp_bytes_per_second", 1.0),
    "deadlocks": ("deadlocks_per_minute", 60.0),
    "wal_bytes": ("wal_bytes_per_second", 1.0),
    "checkpoints": ("checkpoints_per_minute", 60.0),
}


def sampled(server: servers.Server) -> bool:
    """Whether the capture samples this server (see the module docstring)."""
    status = server.record.get("status")
    if status == "running":
        return True
    return server.record.get("desired_state", "running") == "running" and status not in NOT_SAMPLED


# --- processes on this host ----------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    cpu_seconds: float | None
    memory_bytes: int | None
    source: str | None  # "cgroup" | "proc"


NO_RESOURCES = Resources(None, None, None)


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (field 3 onward), or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in (PROC / str(pid) / "task" / str(pid) / "children").read_text().split()]
    except OSError:
        found = []
        for entry in os.scandir(PROC):
            if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[1] == str(pid):
                found.append(int(entry.name))
        return found


def _memory_of(pid: int, fields: list[str]) -> int:
    """Pss of one process (shared buffers counted once over the processes sharing them), or its RSS."""
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


def _cgroups(pid: int) -> dict[str, str]:
    """The cgroup v1 path of the process per controller (`memory`, `cpuacct`, ...)."""
    groups: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (PROC / str(pid) / "cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                groups[controller] = path
    return groups


def _cgroup_value(controller: str, path: str | None, name: str) -> int | None:
    if not path or CGROUP_GROUP not in f"{path}/":
        return None
    try:
        return int((CGROUP_ROOT / controller / path.lstrip("/") / name).read_text())
    except (OSError, ValueError):
        return None


def _is_postmaster_of(pid: int, data_directory: str) -> bool:
    try:
        return os.path.realpath(os.readlink(PROC / str(pid) / "cwd")) == os.path.realpath(data_directory)
    except OSError:
        try:  # no right to read its cwd: its command line names the data directory (-D)
            return data_directory in (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False


def resources(backend_pid: int, data_directory: str) -> Resources:
    """CPU time and memory of the server whose backend `backend_pid` is (see the module
    docstring); NO_RESOURCES when that server does not run on this host."""
    backend = _stat(backend_pid)
    if backend is None:
        return NO_RESOURCES
    postmaster = int(backend[1])
    fields = _stat(postmaster)
    if fields is None or not _is_postmaster_of(postmaster, data_directory):
        return NO_RESOURCES
    ticks = float(os.sysconf("SC_CLK_TCK"))
    # utime stime cutime cstime: the postmaster reaps its backends, so theirs are in cutime/cstime
    cpu = sum(int(x) for x in fields[11:15]) / ticks
    memory = _memory_of(postmaster, fields)
    for child in _children(postmaster):
        child_fields = _stat(child)
        if child_fields is None:
            continue  # ended meanwhile: its time is in the postmaster's cutime now
        cpu += (int(child_fields[11]) + int(child_fields[12])) / ticks
        memory += _memory_of(child, child_fields)
    groups = _cgroups(postmaster)
    group_memory = _cgroup_value("memory", groups.get("memory"), "memory.usage_in_bytes")
    group_cpu = _cgroup_value("cpuacct", groups.get("cpuacct"), "cpuacct.usage")
    if group_cpu is not None:
        cpu = group_cpu / 1e9
    if group_memory is not None:
        return Resources(round(cpu, 3), group_memory, "cgroup")
    return Resources(round(cpu, 3), memory, "proc")


@dataclass(frozen=True)
class BackendUsage:
    """One backend's own counters (maintenance measures its runs with them)."""

    cpu_seconds: float  # time on a CPU: /proc/<pid>/schedstat (ns), else utime + stime
    io_bytes: int | None  # read_bytes + write_bytes of /proc/<pid>/io: what reached storage
    memory_bytes: int  # Pss (or RSS)
    server: Resources  # the whole server's, at the same moment


def backend_usage(backend_pid: int, data_directory: str) -> BackendUsage | None:
    """CPU time, storage I/O and memory of one backend of the server at `data_directory`, and
    the server's own resources; None when that server does not run on this host (or the
    backend has ended)."""
    fields = _stat(backend_pid)
    if fields is None or not _is_postmaster_of(int(fields[1]), data_directory):
        return None
    ticks = float(os.sysconf("SC_CLK_TCK"))
    io = None
    with contextlib.suppress(OSError, ValueError):
        counters = dict(
            line.split(": ", 1)
            for line in (PROC / str(backend_pid) / "io").read_text().splitlines()
            if ": " in line
        )
        io = int(counters["read_bytes"]) + int(counters["write_bytes"])
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with contextlib.suppress(OSError, ValueError, IndexError):
        # nanoseconds on a CPU (the scheduler's own count: finer than utime/stime's clock ticks)
        cpu = max(cpu, int((PROC / str(backend_pid) / "schedstat").read_text().split()[0]) / 1e9)
    return BackendUsage(
        cpu_seconds=cpu,
        io_bytes=io,
        memory_bytes=_memory_of(backend_pid, fields),
        server=resources(backend_pid, data_directory),
    )


# --- one server ----------------------------------------------------------------------------------


@dataclass
class _Reading:
    """What one session read (None where it could not)."""

    row: tuple[Any, ...] | None = None
    checkpoints: int | None = None
    replication: list[dict[str, Any]] = field(default_factory=list)
    resources: Resources = NO_RESOURCES


def _read(ports: Ports, server: servers.Server, node: str | None) -> _Reading:
    reading = _Reading()
    with ports.sql.session(
        server.id, node=node, statement_timeout_ms=STATEMENT_TIMEOUT_MS, lock_timeout_ms=LOCK_TIMEOUT_MS
    ) as session:
        row = session.fetch_one(sql.SERVER)
        if row is None:
            raise EngineError(f"{server.id}: the statistics query returned nothing")
        reading.row = row
        version = int(row[0])
        query = (
            sql.CHECKPOINTS_SINCE_17 if version >= sql.CHECKPOINTER_VERSION_NUM else sql.CHECKPOINTS_BEFORE_17
        )
        found = session.fetch_one(query)
        reading.checkpoints = int(found[0]) if found and found[0] is not None else None
        if row[16] is not None:  # a primary: its standbys stream from it
            for slot, name, state, lag_bytes, lag_seconds in session.fetch_all(sql.REPLICATION):
                reading.replication.append({
                    "name": name or slot, "state": state, "lag_bytes": int(lag_bytes),
                    "lag_seconds": None if lag_seconds is None else round(float(lag_seconds), 3),
                })  # fmt: skip
        # while the session's backend exists: it leads to the server's processes on this host
        try:
            reading.resources = resources(int(row[19]), str(row[20]))
        except (OSError, ValueError, IndexError) as exc:
            log.debug("resources of %s: %s", server.id, exc)
    return reading


def _delta(now: Any, before: Any) -> float | None:
    """now - before of a counter; None without both, or when it went down (a restart)."""
    if now is None or before is None or now < before:
        return None
    return float(now - before)


def _ratio(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else round(part / whole, 6)


def measure(
    ports: Ports, server: servers.Server, previous: HistoryRecord | None, at: datetime
) -> dict[str, Any]:
    """One server's sample `data` (every key of KEYS), never raising for what the server does."""
    data: dict[str, Any] = dict.fromkeys(KEYS)
    data.update(up=False, status=server.record.get("status"), replication=[])
    try:
        _measure_into(ports, server, data)
    except Exception as exc:  # one server's failure is its sample, not the capture's
        data["up"] = False
        data["error"] = str(exc)[:500] or type(exc).__name__
        if not isinstance(exc, EngineError):
            log.warning("sampling %s failed", server.id, exc_info=exc)
    _last_backup(ports, server, data, at)
    apply_rates(data, previous, at)
    return data


def _measure_into(ports: Ports, server: servers.Server, data: dict[str, Any]) -> None:
    node = None
    if server.kind == clusters.KIND:
        members = ports.cluster_engine.members(server.id)
        leader = next((m for m in members if m.role == "primary" and m.running), None)
        if leader is None:
            data["error"] = "the cluster has no running primary"
            return
        node = data["primary"] = leader.node_id
    reading = _read(ports, server, node)
    row = reading.row
    assert row is not None
    (_version, max_conn, active, idle, idle_tx, total, oldest, idle_tx_max, commits, rollbacks, hit, read,
     temp, deadlocks, size, xid_age, wal, timeline, blocking, _pid, _datadir, _now) = row  # fmt: skip
    data.update(
        up=True, connections_active=active, connections_idle=idle, connections_idle_in_transaction=idle_tx,
        connections_total=total, connections_max=max_conn, xact_commit=commits, xact_rollback=rollbacks,
        blks_hit=hit, blks_read=read, temp_bytes=temp, deadlocks=deadlocks, wal_bytes=wal,
        checkpoints=reading.checkpoints, database_size_bytes=size,
        oldest_xact_age_seconds=round(float(oldest), 3), idle_in_transaction_max_seconds=round(float(idle_tx_max), 3),
        xid_age=xid_age, xid_remaining=None if xid_age is None else XID_LIMIT - int(xid_age),
        timeline=None if timeline is None else int(timeline), blocking_sessions=blocking,
        replication=reading.replication, cpu_seconds=reading.resources.cpu_seconds,
        memory_bytes=reading.resources.memory_bytes, resource_source=reading.resources.source,
    )  # fmt: skip
    if reading.replication:
        data["replication_lag_bytes_max"] = max(r["lag_bytes"] for r in reading.replication)
        seconds = [r["lag_seconds"] for r in reading.replication if r["lag_seconds"] is not None]
        data["replication_lag_seconds_max"] = max(seconds) if seconds else None


def _last_backup(ports: Ports, server: servers.Server, data: dict[str, Any], at: datetime) -> None:
    try:
        last = archive.records.latest_completed(ports, server.id)
    except Exception as exc:  # the store failing is said, the rest of the sample stands
        data["error"] = data["error"] or f"last backup: {exc}"[:500]
        return
    finished = last.get("finished_at") if last else None
    if finished:
        moment = archive.records.parse_iso(str(finished))
        data["last_backup_at"] = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
        data["last_backup_age_seconds"] = round(max(0.0, (at - moment).total_seconds()), 1)


def apply_rates(data: dict[str, Any], previous: HistoryRecord | None, at: datetime) -> None:
    if previous is None or not data["up"]:
        return
    seconds = (at - previous.at).total_seconds()
    if seconds <= 0:
        return
    before = previous.data
    for counter, (rate, per) in RATES.items():
        delta = _delta(data[counter], before.get(counter))
        data[rate] = None if delta is None else round(delta / seconds * per, 6)
    commits = _delta(data["xact_commit"], before.get("xact_commit"))
    rollbacks = _delta(data["xact_rollback"], before.get("xact_rollback"))
    if commits is not None and rollbacks is not None:
        data["rollback_ratio"] = _ratio(rollbacks, commits + rollbacks)
    hits = _delta(data["blks_hit"], before.get("blks_hit"))
    reads = _delta(data["blks_read"], before.get("blks_read"))
    if hits is not None and reads is not None:
        data["cache_hit_ratio"] = _ratio(hits, hits + reads)
    cpu = _delta(data["cpu_seconds"], before.get("cpu_seconds"))
    if cpu is not None:
        data["cpu_percent"] = round(100.0 * cpu / seconds, 2)


def previous_sample(ports: Ports, target_id: str, at: datetime) -> HistoryRecord | None:
    """The target's newest sample of the last PREVIOUS_WINDOW before `at`, or None. The last
    RECENT_WINDOW first: a query reads its whole range, and the previous sample is usually a
    minute old."""
    for window in (RECENT_WINDOW, PREVIOUS_WINDOW):
        page = ports.history.query(STREAM, start=at - window, end=at, target_id=target_id, page_size=1)
        if page.items:
            return page.items[0]
    return None


# --- the capture ---------------------------------------------------------------------------------


def _sample(ports: Ports, server: servers.Server) -> Sample:
    at = datetime.now(UTC)
    try:
        previous = previous_sample(ports, server.id, at)
    except Exception as exc:  # no previous sample to compare with: no rates this time
        log.warning("previous sample of %s: %s", server.id, exc)
        previous = None
    data = measure(ports, server, previous, at)
    if previous is not None:
        _compact(ports, server, previous.at, at)
    return Sample(server=server, at=at, data=data, previous=previous.data if previous else None)


def _compact(ports: Ports, server: servers.Server, before: datetime, at: datetime) -> None:
    """The first sample of a server in a new hour: the hour of its previous sample is over,
    so its chunk is written (metrics.HOUR_STREAM)."""
    hour = metrics.bucket_start(before.timestamp(), metrics.HOUR)
    if metrics.bucket_start(at.timestamp(), metrics.HOUR) == hour:
        return
    try:
        metrics.write_hour_chunk(ports, server.id, str(server.record["tenant_id"]), hour)
    except Exception as exc:  # the samples stay; the hour is read from them instead
        log.warning("hour chunk of %s: %s", server.id, exc)


def capture(ports: Ports, found: Iterable[servers.Server]) -> list[Sample]:
    """Sample every server given, side by side, and store the samples (one history record
    per server). A server that fails is a sample with `up` False and its `error`."""
    todo = list(found)
    if not todo:
        return []
    for name in ("engine", "cluster_engine"):  # built once, on this thread, before the workers use them
        with contextlib.suppress(Exception):
            getattr(ports, name)
    with ThreadPoolExecutor(
        max_workers=min(CAPTURE_WORKERS, len(todo)), thread_name_prefix="pgfleet-sample"
    ) as pool:
        samples = list(pool.map(lambda s: _sample(ports, s), todo))
    kept = {t: metrics.retention_days(ports, t) * 86400 for t in {s.tenant_id for s in samples}}
    ports.history.append(STREAM, [record_of(s, kept[s.tenant_id]) for s in samples])
    return samples


def record_of(sample: Sample, ttl_seconds: int = SAMPLE_TTL_SECONDS) -> HistoryRecord:
    return HistoryRecord(
        stream=STREAM, target_id=sample.target_id, tenant_id=sample.tenant_id, at=sample.at,
        data=sample.data, ttl_seconds=ttl_seconds,
    )  # fmt: skip


def capture_interval(ports: Ports, tenant_id: str | None) -> int:
    """The tenant's capture interval in minutes (CAPTURE_INTERVAL_MINUTES unless it set one)."""
    return int(tenant_settings.value(ports, tenant_id, "monitoring", "capture_interval_minutes",
                                     CAPTURE_INTERVAL_MINUTES))  # fmt: skip


def due(ports: Ports, server: servers.Server, interval_minutes: int, at: datetime) -> bool:
    """Whether the capture at `at` samples this server: always at the schedule's own rate;
    with a longer interval, once its newest sample is at least that old (less INTERVAL_SLACK)."""
    if interval_minutes <= CAPTURE_INTERVAL_MINUTES:
        return True
    recent = timedelta(minutes=interval_minutes) - INTERVAL_SLACK
    page = ports.history.query(STREAM, start=at - recent, end=at, target_id=server.id, page_size=1)
    return not page.items


def summary(samples: Sequence[Sample]) -> str:
    up = sum(1 for s in samples if s.data["up"])
    down = [s.target_id for s in samples if not s.data["up"]]
    line = f"sampled {len(samples)} server(s): {up} up"
    return line + (f", {len(down)} down ({', '.join(down[:10])})" if down else "")


def scheduled_capture(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """The platform schedule: sample every server that runs or should run, store the samples,
    and evaluate the alert rules on them."""
    at = datetime.now(UTC)
    intervals: dict[str, int] = {}
    todo: list[servers.Server] = []
    waiting: list[servers.Server] = []
    for server in servers.all_servers(ports):
        if not sampled(server):
            continue
        tenant = str(server.record.get("tenant_id"))
        if tenant not in intervals:
            intervals[tenant] = capture_interval(ports, tenant)
        (todo if due(ports, server, intervals[tenant], at) else waiting).append(server)
    samples = capture(ports, todo)
    line = summary(samples)
    if waiting:
        line += f"; {len(waiting)} not due yet (their tenant's capture interval)"
    return [line, *rules.evaluate(ports, samples)]
