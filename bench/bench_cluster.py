"""HA cluster timings with the local Patroni engine, each measured RUNS times:

(a) create a 3-node cluster until both replicas stream               goal <= 15 s
(b) switchover to a healthy replica until it accepts writes           goal <= 5 s
(c) node loss: kill -9 of the primary's Patroni and PostgreSQL until
    writes succeed again through the multi-host URI                   goal <= 25 s

The engine is driven directly (the API adds only its queue hop, which the create benchmark
measures): etcd and the clusters run in a scratch directory under /tmp, and everything is
stopped and removed at the end, however the run ends.

    .venv/bin/python bench/bench_cluster.py [--mode async|sync] [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from pgfleet.adapters.engines.local import patroni_process, patroni_rest
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.local import etcd
from pgfleet.ports.cluster_engine import REPLICATION_MODES, ClusterSpec, NodeSpec

DATABASE = "bench"
USERNAME = "bench"
PASSWORD = secrets.token_urlsafe(16)
GOALS = {"create": 15.0, "switchover": 5.0, "node loss": 25.0}
TIMEOUT = 120.0  # a measurement that takes this long has failed

Results = dict[str, list[float]]


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


def make_spec(cluster_id: str, mode: str) -> ClusterSpec:
    ports = free_ports(6)
    nodes = tuple(NodeSpec(f"n{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(3))
    return ClusterSpec(cluster_id, "15", nodes, replication_mode=mode, cpu=1, memory_mb=256)


def multi_host_uri(spec: ClusterSpec) -> str:
    hosts = ",".join(f"127.0.0.1:{n.port}" for n in spec.nodes)
    return f"postgresql://{USERNAME}@{hosts}/{DATABASE}?target_session_attrs=read-write&connect_timeout=2"


def write_once(conninfo: str) -> int | None:
    """Insert one row; the port of the node that committed it, or None if that failed."""
    try:
        with psycopg.connect(conninfo, password=PASSWORD, autocommit=True) as conn:
            conn.execute("INSERT INTO bench_writes DEFAULT VALUES")
            return conn.info.port
    except psycopg.Error:
        return None


def wait_until(
    what: str, predicate: Callable[[], bool], timeout: float = TIMEOUT, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def replicas_streaming(engine: LocalPatroniEngine, cluster_id: str) -> bool:
    states = [(m.role, m.state) for m in engine.members(cluster_id)]
    return states.count(("replica", "streaming")) == 2 and states.count(("primary", "running")) == 1


def primary_of(engine: LocalPatroniEngine, cluster_id: str) -> str:
    primaries = [m.node_id for m in engine.members(cluster_id) if m.role == "primary" and m.running]
    if len(primaries) != 1:
        raise RuntimeError(f"expected one primary, found {primaries}")
    return primaries[0]


def create(engine: LocalPatroniEngine, spec: ClusterSpec) -> float:
    """(a) From nothing to a primary and two streaming replicas."""
    started = time.perf_counter()
    for node in spec.nodes:
        engine.provision_node(spec, node)
    # Nodes are independent until they meet in the DCS: start them together, as the
    # service does, rather than paying each Patroni's start-up in turn.
    with ThreadPoolExecutor(len(spec.nodes)) as pool:
        list(pool.map(lambda node: engine.start_node(spec, node), spec.nodes))
    wait_until("two streaming replicas", lambda: replicas_streaming(engine, spec.cluster_id))
    return time.perf_counter() - started


def switchover_candidate(spec: ClusterSpec) -> str:
    """A streaming replica: in the synchronous modes (quorum commit) every streaming replica
    is a synchronous standby and may take over."""
    urls = [f"http://127.0.0.1:{n.rest_port}" for n in spec.nodes]
    cluster = patroni_rest.get_cluster(urls) or {"members": []}
    wanted = patroni_rest.SYNC_ROLES if spec.replication_mode != "async" else ("replica",)
    for member in cluster["members"]:
        if member.get("role") in wanted and member.get("state") == "streaming":
            return str(member["name"])
    raise RuntimeError(f"no healthy replica to switch over to: {cluster['members']}")


def switchover(engine: LocalPatroniEngine, spec: ClusterSpec) -> tuple[float, str]:
    """(b) From the request until the candidate itself commits a write."""
    candidate = switchover_candidate(spec)
    direct = (
        f"postgresql://{USERNAME}@127.0.0.1:{spec.node(candidate).port}/{DATABASE}"
        "?target_session_attrs=read-write&connect_timeout=2"
    )
    started = time.perf_counter()
    engine.switchover(spec.cluster_id, candidate)
    wait_until(f"writes on {candidate}", lambda: write_once(direct) is not None)
    return time.perf_counter() - started, candidate


def node_loss(engine: LocalPatroniEngine, spec: ClusterSpec) -> tuple[float, str, str]:
    """(c) From the kill until a write through the multi-host URI commits on another node."""
    old = primary_of(engine, spec.cluster_id)
    old_port = spec.node(old).port
    uri = multi_host_uri(spec)
    started = time.perf_counter()
    engine.kill_node(spec.cluster_id, old)
    landed: list[int] = []

    def written_elsewhere() -> bool:
        port = write_once(uri)
        if port is not None and port != old_port:
            landed.append(port)
            return True
        return False

    wait_until("writes after the primary's loss", written_elsewhere, interval=0.1)
    elapsed = time.perf_counter() - started
    return elapsed, old, next(n.node_id for n in spec.nodes if n.port == landed[0])


def rejoin(engine: LocalPatroniEngine, spec: ClusterSpec, node_id: str) -> float:
    """Restart a killed node and wait until it streams again (pg_rewind): not a goal, but the
    price of getting back to three nodes, printed alongside."""
    started = time.perf_counter()
    engine.start_node(spec, spec.node(node_id))
    engine.wait_until_healthy(spec, timeout=TIMEOUT)
    return time.perf_counter() - started


def report(name: str, values: list[float], goal: float | None) -> str:
    line = (
        f"{name}: n={len(values)} min={min(values):.2f}s median={statistics.median(values):.2f}s"
        f" max={max(values):.2f}s"
    )
    if goal is not None:
        # Three runs on a shared machine: the median is the figure, the max shows the spread.
        if max(values) <= goal:
            verdict = "met"
        elif statistics.median(values) <= goal:
            verdict = "met by the median, not by every run"
        else:
            verdict = "MISSED"
        line += f"  (goal <= {goal:.0f}s: {verdict})"
    return line


def measure(engine: LocalPatroniEngine, args: argparse.Namespace, cleanup: contextlib.ExitStack) -> Results:
    results: Results = {"create": [], "switchover": [], "node loss": [], "rejoin": []}
    spec: ClusterSpec | None = None
    for run in range(args.runs):
        spec = make_spec(f"bench{run + 1}", args.mode)
        cleanup.callback(quietly, engine.destroy, spec.cluster_id)
        results["create"].append(create(engine, spec))
        print(f"create {run + 1}: {results['create'][-1]:.2f}s", flush=True)
        if run < args.runs - 1:
            engine.destroy(spec.cluster_id)  # one cluster at a time, like a fresh create
    assert spec is not None

    # The last cluster serves the switchovers and the node losses.
    engine.wait_until_healthy(spec, timeout=TIMEOUT)
    engine.ensure_database(spec.cluster_id, DATABASE, USERNAME, PASSWORD)
    with psycopg.connect(multi_host_uri(spec), password=PASSWORD, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
    for run in range(args.runs):
        engine.wait_until_healthy(spec, timeout=TIMEOUT)  # the old primary is back as a replica
        elapsed, candidate = switchover(engine, spec)
        results["switchover"].append(elapsed)
        print(f"switchover {run + 1}: to {candidate} in {elapsed:.2f}s", flush=True)
    for run in range(args.runs):
        engine.wait_until_healthy(spec, timeout=TIMEOUT)
        elapsed, old, new = node_loss(engine, spec)
        results["node loss"].append(elapsed)
        results["rejoin"].append(rejoin(engine, spec, old))
        print(
            f"node loss {run + 1}: {old} killed, writes on {new} after {elapsed:.2f}s;"
            f" {old} streaming again after {results['rejoin'][-1]:.2f}s",
            flush=True,
        )
    return results


def quietly(action: Callable[..., object], *args: object) -> None:
    """Run a clean-up step; a failure is printed, not raised, so it neither hides the error
    that ended the run nor skips the steps after it."""
    try:
        action(*args)
    except Exception as exc:
        print(f"clean-up: {getattr(action, '__name__', action)}{args}: {exc}", file=sys.stderr)


def diagnostics(home: Path, server: etcd.EtcdServer) -> str:
    """What a failed run needs to be understood: etcd's state and the tails of its log and
    of every Patroni log."""
    lines = [f"etcd pid {server.pid()}, healthy: {server.healthy()}"]
    for log in [home / "etcd" / "etcd.log", *sorted(home.glob("pgfleet/clusters/*/*/patroni.log"))]:
        with contextlib.suppress(OSError):
            lines += [f"== {log.relative_to(home)}", *log.read_text(errors="replace").splitlines()[-8:]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=REPLICATION_MODES, default="async", help="the API's default: async")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    # Under /tmp, traversable: the postgres user runs the nodes.
    home = Path(tempfile.mkdtemp(prefix="pgfleet-bench-ha-", dir="/tmp"))
    home.chmod(0o755)
    with contextlib.ExitStack() as cleanup:
        # Last in, first out: destroy the clusters (needs etcd), stop etcd, sweep anything
        # left under the home, remove it.
        cleanup.callback(shutil.rmtree, home, ignore_errors=True)
        cleanup.callback(quietly, patroni_process.kill_everything_under, home)
        client, peer = free_ports(2)
        server = etcd.EtcdServer(home / "etcd", client, peer)
        cleanup.callback(quietly, server.stop)
        server.start()
        engine = LocalPatroniEngine(home / "pgfleet", server.endpoint)
        try:
            results = measure(engine, args, cleanup)
        except BaseException:
            print(f"\nthe benchmark failed:\n{diagnostics(home, server)}\n", file=sys.stderr, flush=True)
            raise

    print(f"\nHA cluster benchmark ({args.mode} replication, {args.runs} runs each)")
    print(report("(a) create 3 nodes -> both replicas streaming", results["create"], GOALS["create"]))
    print(report("(b) switchover -> new primary accepts writes", results["switchover"], GOALS["switchover"]))
    print(report("(c) primary kill -9 -> writes succeed again", results["node loss"], GOALS["node loss"]))
    print(report("    killed node restart -> streaming again", results["rejoin"], None))


if __name__ == "__main__":
    main()
