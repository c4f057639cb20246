"""`GET /api/metrics`: the Prometheus text exposition (`prometheus_client`), measured at each
scrape.

Platform-wide series, for a platform token only:
- `pgfleet_api_requests_total`, `pgfleet_api_request_duration_seconds` (route template,
  method, status) and `pgfleet_api_rate_limited_total` (plan, window): what this process
  answered (`pgfleet.core.telemetry`; in AWS each Lambda instance counts its own);
- `pgfleet_queue_messages{state}`: the operations queue (waiting, in_flight, delayed);
- `pgfleet_operations{type,status}`: operation records by workflow type and status.

Per managed server, for every server the caller sees (a platform token: every tenant's; any
other token: its tenant's), labelled `target_id`, `tenant_id`, `kind`:
- `pgfleet_server_info{name,status,version}` 1;
- `pgfleet_server_last_backup_age_seconds`: since its last physical backup completed (no
  series before the first one);
and for the servers that should be running (status running), each node labelled `node`:
- `pgfleet_server_up`: 1 when the node accepted a connection and answered the statistics
  query within the scrape's time limit (`SCRAPE_TIMEOUT_S`), else 0;
- `pgfleet_server_is_primary`, `pgfleet_server_connections{state}` (active, idle, total
  client backends), `pgfleet_server_max_connections`, `pgfleet_server_uptime_seconds`;
- `pgfleet_server_database_size_bytes` of the server's database (read on its primary);
- `pgfleet_server_replication_lag_bytes{replica}` and `..._lag_seconds{replica}`, as the
  primary sees each standby (seconds only while the standby is connected).
A figure that could not be read has no sample: nothing is estimated.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from pgfleet.core import operations, telemetry
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import PgfleetError
from pgfleet.core.models import utcnow
from pgfleet.domains.platform import fleet
from pgfleet.domains.servers import Server

# Prometheus' default scrape timeout is 10 s: the servers get most of it, in parallel.
SCRAPE_TIMEOUT_S = 8.0
SERVER_LABELS = ("target_id", "tenant_id", "kind")


def exposition(ports: Ports, principal: Principal) -> bytes:
    """The text exposition for the caller (see the module docstring for what it holds)."""
    families: list[Metric] = []
    if principal.is_platform_admin:
        families.extend(platform_families(ports))
    families.extend(server_families(ports, list(fleet.in_scope(ports, principal))))
    return telemetry.exposition(families, with_requests=principal.is_platform_admin)


def platform_families(ports: Ports) -> Iterator[Metric]:
    """The queue's depth and the operations by type and status; a source that cannot be read
    leaves its family out (the detailed health says why)."""
    try:
        depth = ports.queue.depth()
    except PgfleetError:
        pass
    else:
        queue = GaugeMetricFamily(
            "pgfleet_queue_messages", "Messages in the operations queue, by state", labels=("state",)
        )
        for state, count in (
            ("waiting", depth.waiting),
            ("in_flight", depth.in_flight),
            ("delayed", depth.delayed),
        ):
            queue.add_metric((state,), count)
        yield queue
    try:
        counts = operation_counts(ports)
    except PgfleetError:
        return
    family = GaugeMetricFamily(
        "pgfleet_operations", "Operation records, by workflow type and status", labels=("type", "status")
    )
    for (op_type, status), count in sorted(counts.items()):
        family.add_metric((op_type, status), count)
    yield family


def operation_counts(ports: Ports) -> dict[tuple[str, str], int]:
    """How many operations there are of each (type, status): one tally of the statuses, then
    one of the types per status, each in the store."""
    statuses = ports.store.tally(operations.KIND, ("status",))["status"]
    counts: dict[tuple[str, str], int] = {}
    for status in statuses:
        if status is None:
            continue
        types = ports.store.tally(operations.KIND, ("type",), filters={"status": status})["type"]
        for op_type, count in types.items():
            counts[(str(op_type), str(status))] = count
    return counts


# key -> (name, help, labels beyond SERVER_LABELS), in the order of the exposition.
SERVER_SERIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "info": ("pgfleet_server_info", "A managed server (instance or cluster)", ("name", "status", "version")),
    "up": ("pgfleet_server_up", "1 when the node answered a statistics query in time, else 0", ("node",)),
    "primary": ("pgfleet_server_is_primary", "1 for the node that takes writes", ("node",)),
    "connections": ("pgfleet_server_connections", "Client connections, by state", ("node", "state")),
    "max_connections": ("pgfleet_server_max_connections", "The node's max_connections", ("node",)),
    "uptime": ("pgfleet_server_uptime_seconds", "Seconds since the node's postmaster started", ("node",)),
    "size": ("pgfleet_server_database_size_bytes", "Size of the server's database, on its primary", ()),
    "lag_bytes": ("pgfleet_server_replication_lag_bytes", "WAL a standby has not replayed", ("replica",)),
    "lag_seconds": (
        "pgfleet_server_replication_lag_seconds",
        "Replay lag of a connected standby",
        ("replica",),
    ),
    "backup_age": ("pgfleet_server_last_backup_age_seconds", "Seconds since the last backup completed", ()),
}


def server_families(ports: Ports, targets: list[Server]) -> list[Metric]:
    """Every server's series, the servers observed side by side within `SCRAPE_TIMEOUT_S`."""
    out = {
        key: GaugeMetricFamily(name, documentation, labels=(*SERVER_LABELS, *extra))
        for key, (name, documentation, extra) in SERVER_SERIES.items()
    }
    now = utcnow()
    for server, outcome in fleet.observe_all(ports, targets, SCRAPE_TIMEOUT_S):
        record = server.record
        labels = (server.id, str(record.get("tenant_id", "")), server.kind)
        about = (str(record.get("name", "")), str(record.get("status", "")), str(record.get("version", "")))
        out["info"].add_metric((*labels, *about), 1)
        seen = outcome.value
        if seen is None:  # no answer in time, or it could not be observed: no node is up
            if record.get("status") == fleet.SHOULD_ANSWER:
                for node_id in fleet.node_ids(server):
                    out["up"].add_metric((*labels, node_id), 0)
            continue
        if seen.last_backup_at is not None:
            out["backup_age"].add_metric(labels, max(0.0, (now - seen.last_backup_at).total_seconds()))
        for node in seen.nodes:
            at = (*labels, node.node_id)
            out["up"].add_metric(at, 1 if node.up else 0)
            out["primary"].add_metric(at, 1 if node.is_primary else 0)
            if node.stats is None:
                continue
            s = node.stats
            for state, count in (("active", s.connections_active), ("idle", s.connections_idle),
                                 ("total", s.connections_total)):  # fmt: skip
                out["connections"].add_metric((*at, state), count)
            out["max_connections"].add_metric(at, s.connections_max)
            out["uptime"].add_metric(at, s.uptime_seconds)
            if node.is_primary:
                out["size"].add_metric(labels, s.database_size_bytes)
        for replica in seen.replicas:
            out["lag_bytes"].add_metric((*labels, replica.name), replica.lag_bytes)
            if replica.lag_seconds is not None:
                out["lag_seconds"].add_metric((*labels, replica.name), replica.lag_seconds)
    return list(out.values())
