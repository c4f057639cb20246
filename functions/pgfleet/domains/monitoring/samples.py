"""What the metric capture hands to the alert rules: one `Sample` per server and capture.

`data` is the snake_case document stored in the history stream `metrics` (one record per
server per capture). A key whose value cannot be measured on this server is None (a rate
needs a previous sample; a replication lag needs a replica), never a made-up value.

Keys:
- `up` (bool): the server accepted a connection during the capture; `status` its record's status.
- `connections_active`, `connections_idle`, `connections_idle_in_transaction`,
  `connections_total`, `connections_max` (max_connections).
- counters as read (cumulative, to compute the next sample's rates): `xact_commit`,
  `xact_rollback`, `blks_hit`, `blks_read`, `temp_bytes`, `deadlocks`, `wal_bytes`
  (pg_current_wal_lsn - '0/0'), `checkpoints` (timed + requested).
- rates over the interval since the previous sample: `commits_per_second`,
  `rollbacks_per_second`, `rollback_ratio` (rollbacks / (commits + rollbacks), None with no
  transactions), `cache_hit_ratio` (hit / (hit + read) of the interval, None with no reads),
  `temp_bytes_per_second`, `deadlocks_per_minute`, `wal_bytes_per_second`,
  `checkpoints_per_minute`.
- `database_size_bytes` (every database of the server).
- `replication`: [{"name": replica id or node name, "lag_bytes": int, "lag_seconds": float
  or None}], with `replication_lag_bytes_max` and `replication_lag_seconds_max`.
- `oldest_xact_age_seconds`, `idle_in_transaction_max_seconds`.
- `xid_age` (max age(datfrozenxid)), `xid_remaining` (2^31 - 1 - xid_age: what is left
  before wraparound).
- `last_backup_at` (ISO 8601 of the newest completed backup), `last_backup_age_seconds`.
- `cpu_percent` (of one CPU, over the interval), `memory_bytes`, `resource_source`
  ("cgroup" or "proc").
- `timeline` (int) and, for a cluster, `primary` (the leader's node name): a change between
  two samples is a failover.
- `blocking_sessions`: sessions that hold a lock another session waits for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgfleet.domains import servers

STREAM = "metrics"


@dataclass(frozen=True)
class Sample:
    """One server's capture: what it measured now, and its previous sample (None for the first)."""

    server: servers.Server
    at: datetime
    data: dict[str, Any]
    previous: dict[str, Any] | None = None

    @property
    def target_id(self) -> str:
        return self.server.id

    @property
    def tenant_id(self) -> str:
        return str(self.server.record["tenant_id"])
