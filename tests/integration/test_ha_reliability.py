"""Ten forced failovers of a 3-node synchronous Patroni cluster under a steady write load.

Each round kill -9s the primary (Patroni and PostgreSQL), waits until the writer's commits
are acknowledged again by another node, then restarts the killed node and waits until the
cluster is healthy again as the engine defines it (`ClusterEngine.wait_until_healthy`): the
killed node a replica streaming on the new primary's timeline within the lag bound (after
pg_rewind, or a re-clone when Patroni decides so), and a synchronous standby chosen, so every
kill hits a cluster whose commits are protected by a standby. The test then checks exactly
that definition (`NodeState.replica_problem`), not a stricter or looser one of its own.

What must hold afterwards:
- no acknowledged commit is lost: every id the writer saw committed is on the final primary
  (and every node ends with the same rows);
- at no sampled moment do two nodes accept writes: a monitor thread asks every node, over
  its own socket and every ~200 ms, whether it is out of recovery and not read-only.

Figures are printed (run with -s); times are measured, not asserted: speed goals live in
bench/bench_cluster.py.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgfleet.adapters.engines.local import patroni_config, patroni_process
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.local import etcd
from pgfleet.ports.cluster_engine import ClusterSpec, NodeSpec

CLUSTER = "harel"
DATABASE = "appdb"
USERNAME = "app"
PASSWORD = secrets.token_urlsafe(16)
FAILOVERS = 10
SAMPLE_INTERVAL = 0.2  # seconds between two monitor rounds
FAILOVER_TIMEOUT = 90.0  # ttl 20 s + election; ~22 s expected
REJOIN_TIMEOUT = 180.0
ACKS_BETWEEN_KILLS = 20  # writes must flow on the healed cluster before the next kill

pytestmark = pytest.mark.skipif(
    not Path(etcd.ETCD_BIN).exists() or not Path("/usr/lib/postgresql/15/bin/postgres").exists(),
    reason="needs etcd and PostgreSQL 15",
)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so they cannot repeat)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def multi_host_uri(spec: ClusterSpec) -> str:
    hosts = ",".join(f"127.0.0.1:{n.port}" for n in spec.nodes)
    return f"postgresql://{USERNAME}@{hosts}/{DATABASE}?target_session_attrs=read-write&connect_timeout=2"


def primary_of(engine: LocalPatroniEngine) -> str:
    primaries = [m.node_id for m in engine.members(CLUSTER) if m.role == "primary" and m.running]
    assert len(primaries) == 1, engine.members(CLUSTER)
    return primaries[0]


@dataclass(frozen=True)
class Ack:
    ident: int
    at: float  # time.monotonic() when the commit was acknowledged
    port: int  # the node that acknowledged it


class Writer(threading.Thread):
    """Inserts sequential ids through the multi-host URI (read-write, autocommit), one
    statement per transaction, recording every id whose commit was acknowledged. On any
    error the id is "uncertain" (the commit may or may not have happened) and the writer
    reconnects: libpq then finds whichever node accepts writes now."""

    def __init__(self, uri: str) -> None:
        super().__init__(name="ha-writer", daemon=True)
        self._uri = uri
        self._halt = threading.Event()
        self.acks: list[Ack] = []  # appended by this thread only; list.append is atomic
        self.uncertain: list[int] = []
        self.attempted = 0  # ids 1..attempted were sent
        self.connect_failures = 0
        self.crash: BaseException | None = None

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        port = 0
        try:
            while not self._halt.is_set():
                if conn is None:
                    try:
                        conn = psycopg.connect(self._uri, password=PASSWORD, autocommit=True)
                        port = conn.info.port
                    except psycopg.Error:
                        self.connect_failures += 1
                        time.sleep(0.05)
                        continue
                ident = self.attempted + 1
                self.attempted = ident
                try:
                    conn.execute("INSERT INTO ha_writes (id) VALUES (%s)", (ident,))
                except psycopg.Error:
                    self.uncertain.append(ident)
                    conn.close()
                    conn = None
                    continue
                self.acks.append(Ack(ident, time.monotonic(), port))
        except BaseException as exc:  # surfaced by the test: a dead writer proves nothing
            self.crash = exc
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def first_ack_after(self, since: float, not_port: int, start: int, timeout: float) -> Ack:
        """The first commit acknowledged after `since` by a node other than `not_port`."""
        deadline = time.monotonic() + timeout
        index = start
        while True:
            acks = self.acks
            while index < len(acks):
                ack = acks[index]
                index += 1
                if ack.at > since and ack.port != not_port:
                    return ack
            if self.crash is not None or not self.is_alive():
                raise AssertionError(f"the writer stopped: {self.crash!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no commit acknowledged within {timeout:.0f}s of the kill")
            time.sleep(0.05)

    def wait_acks_after(self, since: float, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for a in self.acks[-count:] if a.at > since) < count:
            if self.crash is not None or not self.is_alive():
                raise AssertionError(f"the writer stopped: {self.crash!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} commits acknowledged in {timeout:.0f}s")
            time.sleep(0.05)


class Monitor(threading.Thread):
    """Every SAMPLE_INTERVAL, asks each node over its private socket (superuser, trust)
    whether it would take a write: out of recovery and not read-only. One connection per
    node is kept and reopened after errors (a node down or starting counts as not
    writable). A round asks the three nodes one after the other within milliseconds, far
    below the ~20 s a failover takes, so two "writable" answers in one round mean two
    primaries at once."""

    def __init__(self, sockets: dict[str, tuple[Path, int]]) -> None:
        super().__init__(name="ha-monitor", daemon=True)
        self._sockets = sockets
        self._conns: dict[str, psycopg.Connection | None] = dict.fromkeys(sockets)
        self._halt = threading.Event()
        self.rounds = 0
        self.rounds_without_writer = 0
        self.double_primary: list[tuple[float, list[str]]] = []
        self.seen_writable: set[str] = set()
        self.crash: BaseException | None = None

    def _writable(self, node: str) -> bool:
        conn = self._conns[node]
        try:
            if conn is None or conn.closed:
                directory, port = self._sockets[node]
                conn = psycopg.connect(
                    host=str(directory),
                    port=port,
                    user=patroni_config.SUPERUSER,
                    dbname="postgres",
                    autocommit=True,
                    connect_timeout=1,
                    options="-c statement_timeout=1000",
                    application_name="ha-monitor",
                )
                self._conns[node] = conn
            row = conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')"
            ).fetchone()
        except psycopg.Error:
            if conn is not None:
                conn.close()
            self._conns[node] = None
            return False
        return row is not None and row[0] is False and row[1] == "off"

    def run(self) -> None:
        try:
            while not self._halt.wait(SAMPLE_INTERVAL):
                writable = [node for node in self._sockets if self._writable(node)]
                self.rounds += 1
                self.seen_writable.update(writable)
                if not writable:
                    self.rounds_without_writer += 1
                elif len(writable) > 1:
                    self.double_primary.append((time.monotonic(), writable))
        except BaseException as exc:
            self.crash = exc
        finally:
            for conn in self._conns.values():
                if conn is not None:
                    conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


@dataclass(frozen=True)
class Harness:
    engine: LocalPatroniEngine
    spec: ClusterSpec
    home: Path
    etcd: etcd.EtcdServer

    def diagnostics(self) -> str:
        """etcd's state and the tails of its log and of every Patroni log, for a failure."""
        lines = [f"etcd pid {self.etcd.pid()}, healthy: {self.etcd.healthy()}"]
        logs = [self.etcd.log_file, *sorted(self.engine.cluster_dir(CLUSTER).glob("*/patroni.log"))]
        for log in logs:
            with contextlib.suppress(OSError):
                lines += [
                    f"== {log.relative_to(self.home)}",
                    *log.read_text(errors="replace").splitlines()[-8:],
                ]
        return "\n".join(lines)


@pytest.fixture
def cluster() -> Iterator[Harness]:
    """etcd and a healthy 3-node `sync` cluster in a scratch home; whatever happens in the
    test, etcd and every Patroni and PostgreSQL started here are gone afterwards."""
    # Not under pytest's tmp_path: other pytest sessions on the machine reset
    # /tmp/pytest-of-<user> to 0700, which would cut the postgres user off mid-test.
    home = Path(tempfile.mkdtemp(prefix="pgfleet-harel-", dir="/tmp"))
    home.chmod(0o755)  # the postgres user must traverse it
    with contextlib.ExitStack() as cleanup:
        # Callbacks run last-in first-out, each even when an earlier one raised.
        cleanup.callback(shutil.rmtree, home, ignore_errors=True)
        # The sweep: anything still working under the home (postgres, pg_rewind, etcd).
        cleanup.callback(patroni_process.kill_everything_under, home)
        ports = free_ports(8)
        server = etcd.EtcdServer(home / "etcd", ports[6], ports[7])
        cleanup.callback(server.stop)
        server.start()
        engine = LocalPatroniEngine(home / "pgfleet", server.endpoint)
        cleanup.callback(engine.destroy, CLUSTER)  # needs etcd: runs before server.stop
        nodes = tuple(NodeSpec(f"n{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(3))
        spec = ClusterSpec(CLUSTER, "15", nodes, replication_mode="sync", cpu=1, memory_mb=256)
        for node in spec.nodes:
            engine.provision_node(spec, node)
        with ThreadPoolExecutor(len(spec.nodes)) as pool:
            list(pool.map(lambda node: engine.start_node(spec, node), spec.nodes))
        engine.wait_until_healthy(spec, timeout=120)
        engine.ensure_database(CLUSTER, DATABASE, USERNAME, PASSWORD)
        with psycopg.connect(multi_host_uri(spec), password=PASSWORD, autocommit=True) as conn:
            conn.execute("CREATE TABLE ha_writes (id bigint PRIMARY KEY)")
        yield Harness(engine, spec, home, server)


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def how_it_rejoined(patroni_log: Path, offset: int) -> str:
    """What Patroni logged since `offset` while bringing the node back."""
    with contextlib.suppress(OSError), open(patroni_log, "rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
        if "Removing data directory" in text:
            return "re-clone"
        if "running pg_rewind" in text:
            return "pg_rewind"
        return "no rewind needed"
    return "unknown (no log)"


def rows_on(spec: ClusterSpec, node: NodeSpec) -> set[int]:
    with psycopg.connect(
        host="127.0.0.1", port=node.port, dbname=DATABASE, user=USERNAME, password=PASSWORD, connect_timeout=3
    ) as conn:
        return {int(r[0]) for r in conn.execute("SELECT id FROM ha_writes")}


def figures(values: list[float]) -> str:
    return f"min {min(values):.1f}s / median {statistics.median(values):.1f}s / max {max(values):.1f}s"


@pytest.mark.slow
def test_ten_failovers_lose_no_acknowledged_commit(cluster: Harness) -> None:
    engine, spec = cluster.engine, cluster.spec
    started = time.monotonic()
    sockets = {n.node_id: (engine.paths(CLUSTER, n.node_id).socket, n.port) for n in spec.nodes}
    monitor = Monitor(sockets)
    writer = Writer(multi_host_uri(spec))
    time_to_writable: list[float] = []
    rejoin_times: list[float] = []
    rejoins: list[str] = []
    primaries: list[str] = [primary_of(engine)]
    try:
        monitor.start()
        writer.start()
        writer.wait_acks_after(started, ACKS_BETWEEN_KILLS)
        for round_no in range(1, FAILOVERS + 1):
            old = primary_of(engine)
            old_node = spec.node(old)
            index = len(writer.acks)
            killed_at = time.monotonic()
            assert engine.kill_node(CLUSTER, old) == "killed"
            ack = writer.first_ack_after(killed_at, old_node.port, index, FAILOVER_TIMEOUT)
            time_to_writable.append(ack.at - killed_at)
            new = next(n.node_id for n in spec.nodes if n.port == ack.port)
            primaries.append(new)

            # Only now, with a new leader holding the key: restarted earlier, the killed
            # node would find its own leader key and simply resume as the primary.
            rejoin_started = time.monotonic()
            patroni_log = engine.paths(CLUSTER, old).root / "patroni.log"
            offset = _log_size(patroni_log)
            engine.start_node(spec, old_node)
            engine.wait_until_healthy(spec, timeout=REJOIN_TIMEOUT)
            rejoin_times.append(time.monotonic() - rejoin_started)
            members = {m.node_id: m for m in engine.members(CLUSTER)}
            # What wait_until_healthy waited for: streaming, on the new primary's timeline,
            # within the lag bound (a rejoined node first streams the old timeline's WAL).
            assert members[old].replica_problem(members[new]) is None, members
            assert members[old].timeline == members[new].timeline, members
            rejoins.append(how_it_rejoined(patroni_log, offset))
            print(
                f"failover {round_no}: {old} killed, {new} writable after {time_to_writable[-1]:.1f}s;"
                f" {old} back streaming after {rejoin_times[-1]:.1f}s ({rejoins[-1]},"
                f" timeline {members[new].timeline})"
            )
            # Kill again only once commits flow on the healed cluster.
            writer.wait_acks_after(time.monotonic(), ACKS_BETWEEN_KILLS)
    except BaseException:
        print(f"\nfailed after {len(time_to_writable)} failovers:\n{cluster.diagnostics()}")
        raise
    finally:
        writer.stop()
        monitor.stop()
    assert writer.crash is None, writer.crash
    assert monitor.crash is None, monitor.crash

    final = primary_of(engine)
    present = rows_on(spec, spec.node(final))
    acked = {a.ident for a in writer.acks}
    lost = sorted(acked - present)
    phantom = sorted(present - set(range(1, writer.attempted + 1)))
    uncertain_present = sum(1 for i in writer.uncertain if i in present)
    # Every node ends with the primary's rows: no replica kept a diverged history.
    engine.wait_until_healthy(spec, timeout=REJOIN_TIMEOUT)
    differing: dict[str, int] = {}
    for node in spec.nodes:
        deadline = time.monotonic() + 30
        while (rows := rows_on(spec, node)) != present and time.monotonic() < deadline:
            time.sleep(0.2)
        if rows != present:
            differing[node.node_id] = len(rows ^ present)
    duration = time.monotonic() - started

    print(
        f"\nHA reliability, {FAILOVERS} failovers in {duration:.0f}s:"
        f"\n  time to writable: {figures(time_to_writable)}"
        f"\n  rejoin until healthy (on the new timeline, sync standby): {figures(rejoin_times)}"
        f"\n  rejoins: {', '.join(f'{k} {rejoins.count(k)}' for k in sorted(set(rejoins)))}"
        f"\n  primaries in turn: {' -> '.join(primaries)}"
        f"\n  acknowledged commits: {len(acked)} (of {writer.attempted} attempted;"
        f" {len(writer.uncertain)} uncertain, {uncertain_present} of those committed)"
        f"\n  commits lost: {len(lost)}"
        f"\n  double-primary samples: {len(monitor.double_primary)} of {monitor.rounds} rounds"
        f" ({monitor.rounds_without_writer} rounds with no writable node)"
    )
    assert lost == [], f"{len(lost)} acknowledged commits lost, first {lost[:10]}"
    assert phantom == [], f"rows never written: {phantom[:10]}"
    assert monitor.double_primary == [], monitor.double_primary[:10]
    assert differing == {}, f"nodes whose rows differ from the primary's: {differing}"
    # The monitor really watched: it saw each primary of the run accept writes.
    assert set(primaries) <= monitor.seen_writable, (primaries, monitor.seen_writable)
    assert monitor.rounds > duration / (SAMPLE_INTERVAL * 4)
