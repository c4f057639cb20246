"""A real 3-node Patroni cluster on loopback: create, replicate, switch over, lose the primary,
rejoin with pg_rewind, remove a node, destroy.

The tests run in file order and share one cluster (creating one costs seconds). Timings are
printed (run with -s); they are measured, not asserted tightly: speed goals live in bench/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from pgfleet.adapters.engines.local import patroni_process, patroni_rest
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.core.errors import EngineError
from pgfleet.local import etcd
from pgfleet.ports.cluster_engine import HEALTHY_LAG_BYTES, ClusterSpec, NodeSpec, NodeState

CLUSTER = "hatest"
DATABASE = "appdb"
USERNAME = "app"
PASSWORD = secrets.token_urlsafe(16)
TIMINGS: dict[str, float] = {}

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/etcd").exists() or not Path("/usr/lib/postgresql/15/bin/postgres").exists(),
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


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    # Not under pytest's tmp_path: other pytest sessions on the machine reset
    # /tmp/pytest-of-<user> to 0700, which would cut the postgres user off mid-test.
    base = Path(tempfile.mkdtemp(prefix="pgfleet-ha-", dir="/tmp"))
    base.chmod(0o755)  # the postgres user must traverse it
    yield base
    patroni_process.kill_everything_under(base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def etcd_server(home: Path) -> Iterator[etcd.EtcdServer]:
    client, peer = free_ports(2)
    server = etcd.EtcdServer(home / "etcd", client, peer)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def engine(home: Path, etcd_server: etcd.EtcdServer) -> Iterator[LocalPatroniEngine]:
    eng = LocalPatroniEngine(home / "pgfleet", etcd_server.endpoint)
    yield eng
    # Whatever happened in the tests: nothing of ours may outlive them.
    try:
        eng.destroy(CLUSTER)
    finally:
        patroni_process.kill_everything_under(home / "pgfleet")
        if TIMINGS:
            print("\ntimings: " + ", ".join(f"{k} {v:.1f}s" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def spec() -> ClusterSpec:
    ports = free_ports(6)
    nodes = tuple(NodeSpec(f"n{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(3))
    return ClusterSpec(CLUSTER, "15", nodes, replication_mode="sync", cpu=1, memory_mb=256)


def uri(spec: ClusterSpec, attrs: str = "read-write") -> str:
    hosts = ",".join(f"127.0.0.1:{n.port}" for n in spec.nodes)
    return f"postgresql://{USERNAME}@{hosts}/{DATABASE}?target_session_attrs={attrs}&connect_timeout=3"


def primary_of(engine: LocalPatroniEngine) -> str:
    primaries = [m.node_id for m in engine.members(CLUSTER) if m.role == "primary" and m.running]
    assert len(primaries) == 1, engine.members(CLUSTER)
    return primaries[0]


def count_rows_on(node: NodeSpec, expected: int, timeout: float = 15) -> int:
    """Rows in the test table as seen on `node` (waiting for replay up to `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(
                host="127.0.0.1", port=node.port, dbname=DATABASE, user=USERNAME, password=PASSWORD
            ) as conn:
                n = conn.execute("SELECT count(*) FROM items").fetchone()[0]  # type: ignore[index]
        except psycopg.Error:
            # The database or table may not be replayed here yet.
            if time.monotonic() > deadline:
                raise
            n = -1
        if n >= expected or time.monotonic() > deadline:
            return n
        time.sleep(0.2)


def write_rows(spec: ClusterSpec, count: int) -> None:
    with psycopg.connect(uri(spec), password=PASSWORD) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, note text)")
        for i in range(count):
            conn.execute("INSERT INTO items (note) VALUES (%s)", (f"row {i}",))


def test_create_until_streaming(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    started = time.monotonic()
    for node in spec.nodes:
        engine.provision_node(spec, node)
    # Nodes are independent until Patroni meets them in the DCS: start them together, as a
    # service would, instead of paying each Patroni's interpreter start-up in turn.
    with ThreadPoolExecutor(len(spec.nodes)) as pool:
        list(pool.map(lambda node: engine.start_node(spec, node), spec.nodes))
    while time.monotonic() - started < 90:
        states = [m.state for m in engine.members(CLUSTER) if m.role == "replica"]
        if states == ["streaming", "streaming"]:
            break
        time.sleep(0.1)
    TIMINGS["create-until-streaming"] = time.monotonic() - started
    print(engine.wait_until_healthy(spec, timeout=90))
    TIMINGS["create-until-sync-standby"] = time.monotonic() - started

    assert engine.provision_node(spec, spec.nodes[0]) == "already provisioned"
    assert engine.start_node(spec, spec.nodes[0]) == "already running"
    members = engine.members(CLUSTER)
    assert [m.role for m in members].count("primary") == 1
    assert all(m.running for m in members)
    status = engine.replication_status(CLUSTER)
    assert status.primary == primary_of(engine)
    assert len(status.replicas) == 2
    for replica in status.replicas:
        assert replica.state == "streaming"
        assert replica.lag_bytes < 64 * 1024
        assert replica.is_healthy
    mode = engine.set_replication_mode(spec)  # idempotent: same mode again
    assert "sync" in mode


def test_write_on_primary_read_on_replica(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    engine.ensure_database(CLUSTER, DATABASE, USERNAME, PASSWORD)
    assert "updated role" in engine.ensure_database(CLUSTER, DATABASE, USERNAME, PASSWORD)
    write_rows(spec, 10)
    replica = next(n for n in spec.nodes if n.node_id != primary_of(engine))
    assert count_rows_on(replica, 10) == 10
    stats = engine.node_stats(CLUSTER, replica.node_id, DATABASE)
    assert stats.database_size_bytes > 0
    assert engine.node_logs(CLUSTER, primary_of(engine), 5)


def test_a_cluster_made_before_tls_gets_it_on_every_node_without_a_restart(
    engine: LocalPatroniEngine, spec: ClusterSpec
) -> None:
    import yaml

    from pgfleet.adapters.engines.local import patroni_config, tls

    def plaintext_ok(node: NodeSpec) -> bool:
        try:
            psycopg.connect(host="127.0.0.1", port=node.port, dbname=DATABASE, user=USERNAME, password=PASSWORD,
                            sslmode="disable", connect_timeout=3).close()  # fmt: skip
            return True
        except psycopg.OperationalError:
            return False

    assert engine.ensure_tls(spec) is None  # made with TLS: nothing to do
    started = {}
    for node in spec.nodes:  # as an earlier version wrote patroni.yml: no ssl, host lines
        paths = patroni_config.NodePaths(engine.cluster_dir(CLUSTER) / node.node_id)
        config = yaml.safe_load(paths.config.read_text())
        parameters = config["postgresql"]["parameters"]
        for key in [k for k in parameters if k.startswith("ssl")]:
            del parameters[key]
        config["postgresql"]["pg_hba"] = [
            ln.replace("hostssl", "host", 1) for ln in config["postgresql"]["pg_hba"]
        ]
        paths.config.write_text(patroni_config.dump(config))
        assert patroni_process.reload_patroni(paths)
        with psycopg.connect(
            host="127.0.0.1", port=node.port, dbname=DATABASE, user=USERNAME, password=PASSWORD
        ) as c:
            started[node.node_id] = c.execute("SELECT pg_catalog.pg_postmaster_start_time()").fetchone()
    for node in spec.nodes:
        wait_for(lambda node=node: plaintext_ok(node), 30, f"plaintext on {node.node_id}")
    done = engine.ensure_tls(spec)
    assert done is not None and "TLS turned on" in done and all(n.node_id in done for n in spec.nodes), done
    ca = tls.ensure(engine._home, "127.0.0.1").ca_cert
    for node in spec.nodes:
        assert not plaintext_ok(node), node.node_id
        with psycopg.connect(host="127.0.0.1", port=node.port, dbname=DATABASE, user=USERNAME, password=PASSWORD,
                             sslmode="verify-full", sslrootcert=str(ca), connect_timeout=3) as conn:  # fmt: skip
            assert conn.pgconn.ssl_in_use
            assert (
                conn.execute("SELECT pg_catalog.pg_postmaster_start_time()").fetchone()
                == started[node.node_id]
            )
    assert engine.ensure_tls(spec) is None


def test_replication_mode_change(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    url = f"http://127.0.0.1:{spec.nodes[0].rest_port}"
    engine.set_replication_mode(dataclasses.replace(spec, replication_mode="async"))
    config = patroni_rest.call(url, "GET", "/config").body
    assert (config["synchronous_mode"], config["synchronous_mode_strict"]) == (False, False)
    engine.set_replication_mode(spec)
    config = patroni_rest.call(url, "GET", "/config").body
    # sync is quorum commit: a commit waits for any one replica, and any of them may take over.
    assert (config["synchronous_mode"], config["synchronous_mode_strict"]) == ("quorum", False)
    engine.wait_until_healthy(spec, timeout=60)  # a synchronous standby is chosen again


def test_switchover(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    old = primary_of(engine)
    # Quorum commit: every streaming replica is a synchronous standby, any of them may take over.
    candidate = min(m.node_id for m in engine.members(CLUSTER) if m.role == "replica")
    started = time.monotonic()
    engine.switchover(CLUSTER, candidate)
    TIMINGS["switchover"] = time.monotonic() - started
    assert primary_of(engine) == candidate
    write_rows(spec, 5)
    engine.wait_until_healthy(spec, timeout=60)
    assert {m.node_id: m.role for m in engine.members(CLUSTER)}[old] == "replica"
    assert count_rows_on(spec.node(old), 15) == 15


class Writer(threading.Thread):
    """Inserts sequential ids through the read-write multi-host URI, one autocommit statement
    each, recording the ids whose commit was acknowledged; after an error it reconnects
    (libpq finds whichever node takes writes now)."""

    def __init__(self, spec: ClusterSpec) -> None:
        super().__init__(name="promote-writer", daemon=True)
        self._uri = uri(spec) + "&connect_timeout=2"
        self._halt = threading.Event()
        self.acked: list[int] = []
        self.attempted = 0
        self.crash: BaseException | None = None

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        try:
            while not self._halt.is_set():
                if conn is None:
                    try:
                        conn = psycopg.connect(self._uri, password=PASSWORD, autocommit=True)
                    except psycopg.Error:
                        time.sleep(0.05)
                        continue
                self.attempted += 1
                try:
                    conn.execute("INSERT INTO promote_writes (id) VALUES (%s)", (self.attempted,))
                except psycopg.Error:
                    conn.close()
                    conn = None
                    continue
                self.acked.append(self.attempted)
        except BaseException as exc:  # surfaced by the test
            self.crash = exc
        finally:
            if conn is not None:
                conn.close()

    def wait_acks(self, count: int, timeout: float = 30) -> None:
        target = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            assert self.crash is None and self.is_alive(), self.crash
            assert time.monotonic() < deadline, f"fewer than {count} commits in {timeout:.0f}s"
            time.sleep(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def test_promote_the_asynchronous_replica_while_committing(
    engine: LocalPatroniEngine, spec: ClusterSpec
) -> None:
    """A cluster in Patroni's plain synchronous mode (how `sync` clusters were configured
    before quorum commit) has one synchronous standby and one asynchronous replica. The
    asynchronous one is promoted while a writer commits: it becomes the primary and no
    acknowledged commit is lost."""
    url = f"http://127.0.0.1:{spec.nodes[0].rest_port}"
    legacy = {"synchronous_mode": True, "synchronous_mode_strict": False}
    resp = patroni_rest.call(url, "PATCH", "/config", legacy, auth=engine._auth(CLUSTER))
    assert resp.status == 200, resp
    urls = [f"http://127.0.0.1:{n.rest_port}" for n in spec.nodes]

    def roles() -> dict[str, str]:
        cluster = patroni_rest.get_cluster(urls) or {"members": []}
        return {m["name"]: m["role"] for m in cluster["members"] if m.get("state") == "streaming"}

    wait_for(lambda: sorted(roles().values()) == ["replica", "sync_standby"], 60, "one sync, one async")
    candidate = next(name for name, role in roles().items() if role == "replica")
    with psycopg.connect(uri(spec), password=PASSWORD, autocommit=True) as conn:
        conn.execute("CREATE TABLE promote_writes (id bigint PRIMARY KEY)")
    writer = Writer(spec)
    writer.start()
    try:
        writer.wait_acks(50)
        print(engine.switchover(CLUSTER, candidate))
        writer.wait_acks(50)  # writes flow again, on the new primary
    finally:
        writer.stop()
    assert writer.crash is None, writer.crash
    assert primary_of(engine) == candidate
    with psycopg.connect(
        host="127.0.0.1", port=spec.node(candidate).port, dbname=DATABASE, user=USERNAME, password=PASSWORD
    ) as conn:
        present = {int(r[0]) for r in conn.execute("SELECT id FROM promote_writes")}
    lost = sorted(set(writer.acked) - present)
    assert lost == [], f"{len(lost)} acknowledged commits lost, first {lost[:10]}"
    assert present <= set(range(1, writer.attempted + 1))
    print(f"promoted {candidate}: {len(writer.acked)} commits acknowledged, none lost")
    engine.wait_until_healthy(spec, timeout=90)


def _freeze_patroni(engine: LocalPatroniEngine, node_id: str) -> Callable[[], None]:
    """SIGSTOP the node's Patroni: PostgreSQL keeps running, but what the DCS says about the
    node (state, timeline, WAL position) stays as it was. Returns the function that thaws it.
    The member key lives for Patroni's ttl (20 s): thaw well before that."""
    paths = engine.paths(CLUSTER, node_id)
    pid = patroni_process.patroni_pid(paths)
    assert pid is not None
    # As root, Patroni's parent is runuser, which stops itself when its child stops (job
    # control) and must be continued too, or it outlives the cluster.
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    wrappers = [parent] if os.fsencode(paths.config) in _cmdline(parent) else []
    os.kill(pid, signal.SIGSTOP)

    def thaw() -> None:
        for target in (pid, *wrappers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGCONT)

    return thaw


def _members(engine: LocalPatroniEngine) -> dict[str, NodeState]:
    return {m.node_id: m for m in engine.members(CLUSTER)}


def test_a_replica_behind_the_primary_is_not_healthy(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    """wait_until_healthy calls a replica healthy only on the primary's timeline and at most
    HEALTHY_LAG_BYTES behind it, as Patroni reports them; "streaming" alone is not enough."""
    engine.wait_until_healthy(spec, timeout=60)
    primary = primary_of(engine)
    replicas = sorted(n.node_id for n in spec.nodes if n.node_id != primary)
    # The last replica by name: the engine asks the first Patroni that answers, never this one.
    behind, other = replicas[-1], replicas[0]

    # 1. Behind by more than the bound: 4 MB of WAL the frozen node's report does not show.
    thaw = _freeze_patroni(engine, behind)
    try:
        with psycopg.connect(uri(spec), password=PASSWORD, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS bulk (id int, pad text)")
            conn.execute("INSERT INTO bulk SELECT g, repeat('x', 1000) FROM generate_series(1, 4000) g")
        wait_for(
            lambda: (_members(engine)[behind].lag_bytes or 0) > HEALTHY_LAG_BYTES, 10, "the lag reported"
        )
        with pytest.raises(EngineError, match=rf"{behind}: \d+ bytes behind"):
            engine.wait_until_healthy(spec, timeout=2)
    finally:
        thaw()
    engine.wait_until_healthy(spec, timeout=60)

    # 2. On an older timeline: a switchover while the node's report is frozen.
    timeline = _members(engine)[primary].timeline
    assert timeline is not None
    thaw = _freeze_patroni(engine, behind)
    try:
        engine.switchover(CLUSTER, other)
        wait_for(lambda: (_members(engine)[other].timeline or 0) > timeline, 10, "the new timeline reported")
        assert _members(engine)[behind].state == "streaming"  # as its report still says
        # Only the new primary and the frozen node: the old primary is still rejoining, and
        # the frozen node's timeline is what is checked here.
        pair = dataclasses.replace(
            spec, nodes=(spec.node(other), spec.node(behind)), replication_mode="async"
        )
        with pytest.raises(EngineError, match=rf"{behind}: on timeline {timeline}, the primary on"):
            engine.wait_until_healthy(pair, timeout=2)
    finally:
        thaw()
    engine.wait_until_healthy(spec, timeout=90)
    members = _members(engine)
    assert members[behind].timeline == members[other].timeline
    assert (members[behind].lag_bytes or 0) <= HEALTHY_LAG_BYTES


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_failover_after_kill(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    old = primary_of(engine)
    assert engine.kill_node(CLUSTER, old) == "killed"
    started = time.monotonic()
    new = None
    while time.monotonic() - started < 60:
        try:
            with psycopg.connect(uri(spec), password=PASSWORD) as conn:
                conn.execute("INSERT INTO items (note) VALUES ('after failover')")
                port = conn.info.port
            new = next(n.node_id for n in spec.nodes if n.port == port)
            break
        except psycopg.OperationalError:
            time.sleep(0.25)
    TIMINGS["failover"] = time.monotonic() - started
    assert new is not None and new != old
    assert TIMINGS["failover"] < 45  # ttl 20 s plus election; ~25 s expected
    # The killed node left nothing behind.
    root = engine.paths(CLUSTER, old).root
    assert patroni_process.processes_under(root) == []


def test_killed_node_rejoins(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    killed = next(m.node_id for m in engine.members(CLUSTER) if not m.running)
    started = time.monotonic()
    engine.start_node(spec, spec.node(killed))
    engine.wait_until_healthy(spec, timeout=120)
    TIMINGS["rejoin"] = time.monotonic() - started
    members = {m.node_id: m for m in engine.members(CLUSTER)}
    assert members[killed].role == "replica" and members[killed].state == "streaming"
    primary = members[primary_of(engine)]
    assert members[killed].timeline == primary.timeline
    assert count_rows_on(spec.node(killed), 16) == 16
    patroni_log = (engine.paths(CLUSTER, killed).root / "patroni.log").read_text()
    print("rejoin used pg_rewind:", "rewind" in patroni_log.lower())


def test_no_password_in_files(engine: LocalPatroniEngine) -> None:
    """No password in configuration, logs or data files; only the 0600 secrets file and
    Patroni's 0600 pgpass files (its replication credentials) hold any."""
    root = engine.cluster_dir(CLUSTER)
    secrets_file = root / "secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    values = [v.encode() for v in json.loads(secrets_file.read_text()).values()] + [PASSWORD.encode()]
    allowed = {secrets_file, *root.glob("*/pgpass")}
    for path in root.rglob("*"):
        if path.is_file() and path not in allowed:
            data = path.read_bytes()
            assert not any(v in data for v in values), path
    for pgpass in root.glob("*/pgpass"):
        assert pgpass.stat().st_mode & 0o077 == 0


def test_remove_node(engine: LocalPatroniEngine, spec: ClusterSpec, etcd_server: etcd.EtcdServer) -> None:
    victim = next(n for n in spec.nodes if n.node_id != primary_of(engine))
    assert engine.remove_node(CLUSTER, victim.node_id) == "removed"
    assert not engine.paths(CLUSTER, victim.node_id).root.exists()
    keys = etcd.list_keys(etcd_server.endpoint, f"/pgfleet/{CLUSTER}/")
    assert f"/pgfleet/{CLUSTER}/members/{victim.node_id}" not in keys
    remaining = ClusterSpec(
        CLUSTER, "15", tuple(n for n in spec.nodes if n is not victim), spec.replication_mode, 1, 256
    )
    engine.wait_until_healthy(remaining, timeout=60)
    assert sorted(m.node_id for m in engine.members(CLUSTER)) == [n.node_id for n in remaining.nodes]


def test_destroy(engine: LocalPatroniEngine, etcd_server: etcd.EtcdServer) -> None:
    root = engine.cluster_dir(CLUSTER)
    assert etcd.list_keys(etcd_server.endpoint, f"/pgfleet/{CLUSTER}/")
    assert engine.destroy(CLUSTER) == "destroyed"
    assert not root.exists()
    assert patroni_process.processes_under(root.parent) == []
    assert etcd.list_keys(etcd_server.endpoint, f"/pgfleet/{CLUSTER}/") == []
    ours = [p for p in os.listdir("/proc") if p.isdigit() and str(root).encode() in _cmdline(int(p))]
    assert ours == []
    assert engine.destroy(CLUSTER) == "already destroyed"
    assert engine.members(CLUSTER) == []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
