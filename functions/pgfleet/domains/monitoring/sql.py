"""The SQL of the metric capture and the performance dashboard. Every relation and function is
schema-qualified; it runs through the SQL seam (ports.sql), whose sessions pin search_path to
pg_catalog, pg_temp. These are platform reads: nothing here writes."""

from __future__ import annotations

# One row: the server's settings, its client sessions, the counters of every database summed
# (pg_stat_database includes the shared-objects row of datid 0, whose block counters count
# too), sizes, wraparound, WAL position, timeline and blockers, read in one statement so the
# counters are of one instant. The session's own backend is left out of the sessions. The
# timeline of a primary is that of the WAL it writes now (the first 8 hex digits of its WAL
# file name: right after a promotion, before any checkpoint); a standby's that of its last
# restartpoint.
SERVER = """
SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4,
       pg_catalog.current_setting('max_connections')::pg_catalog.int4,
       a.active, a.idle, a.idle_in_transaction, a.total, a.oldest_xact_seconds, a.idle_in_transaction_seconds,
       d.xact_commit, d.xact_rollback, d.blks_hit, d.blks_read, d.temp_bytes, d.deadlocks,
       (SELECT pg_catalog.sum(pg_catalog.pg_database_size(db.oid))::pg_catalog.int8
          FROM pg_catalog.pg_database db WHERE db.datallowconn),
       (SELECT pg_catalog.max(pg_catalog.age(db.datfrozenxid))::pg_catalog.int8 FROM pg_catalog.pg_database db),
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
            ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::pg_catalog.int8 END,
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN (SELECT c.timeline_id FROM pg_catalog.pg_control_checkpoint() c)
            ELSE ('x' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))
                 ::pg_catalog.bit(32)::pg_catalog.int4 END,
       (SELECT pg_catalog.count(DISTINCT b.pid)::pg_catalog.int4
          FROM pg_catalog.pg_stat_activity w,
               LATERAL pg_catalog.unnest(pg_catalog.pg_blocking_pids(w.pid)) AS b(pid)
         WHERE w.wait_event_type = 'Lock'),
       pg_catalog.pg_backend_pid(),
       pg_catalog.current_setting('data_directory'),
       pg_catalog.clock_timestamp()
FROM (
  SELECT pg_catalog.count(*) FILTER (WHERE s.state = 'active')::pg_catalog.int4 AS active,
         pg_catalog.count(*) FILTER (WHERE s.state = 'idle')::pg_catalog.int4 AS idle,
         pg_catalog.count(*) FILTER (WHERE s.state LIKE 'idle in transaction%%')::pg_catalog.int4
           AS idle_in_transaction,
         pg_catalog.count(*)::pg_catalog.int4 AS total,
         coalesce(extract(epoch FROM pg_catalog.max(pg_catalog.clock_timestamp() - s.xact_start)), 0)::pg_catalog.float8
           AS oldest_xact_seconds,
         coalesce(extract(epoch FROM pg_catalog.max(pg_catalog.clock_timestamp() - s.state_change)
                          FILTER (WHERE s.state LIKE 'idle in transaction%%')), 0)::pg_catalog.float8
           AS idle_in_transaction_seconds
  FROM pg_catalog.pg_stat_activity s
  WHERE s.backend_type = 'client backend' AND s.pid <> pg_catalog.pg_backend_pid()
) a, (
  SELECT pg_catalog.sum(x.xact_commit)::pg_catalog.int8 AS xact_commit,
         pg_catalog.sum(x.xact_rollback)::pg_catalog.int8 AS xact_rollback,
         pg_catalog.sum(x.blks_hit)::pg_catalog.int8 AS blks_hit,
         pg_catalog.sum(x.blks_read)::pg_catalog.int8 AS blks_read,
         pg_catalog.sum(x.temp_bytes)::pg_catalog.int8 AS temp_bytes,
         pg_catalog.sum(x.deadlocks)::pg_catalog.int8 AS deadlocks
  FROM pg_catalog.pg_stat_database x
) d
"""

# Checkpoints so far (timed + requested): PostgreSQL 17 moved them to pg_stat_checkpointer.
CHECKPOINTS_SINCE_17 = (
    "SELECT (c.num_timed + c.num_requested)::pg_catalog.int8 FROM pg_catalog.pg_stat_checkpointer c"
)
CHECKPOINTS_BEFORE_17 = (
    "SELECT (b.checkpoints_timed + b.checkpoints_req)::pg_catalog.int8 FROM pg_catalog.pg_stat_bgwriter b"
)
CHECKPOINTER_VERSION_NUM = 170000

# Every physical slot and every connected standby (a read replica of an instance, a member of
# a cluster), with its replay lag: a disconnected slot's lag is the WAL it holds back.
# (slot, application_name, state, lag bytes, lag seconds or NULL while not connected)
REPLICATION = """
SELECT s.slot_name::pg_catalog.text, coalesce(r.application_name, ''), coalesce(r.state, 'disconnected'),
       greatest(coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),
                                                    coalesce(r.replay_lsn, s.restart_lsn)), 0), 0)::pg_catalog.int8,
       CASE WHEN r.pid IS NOT NULL THEN coalesce(extract(epoch FROM r.replay_lag), 0) END::pg_catalog.float8
FROM pg_catalog.pg_replication_slots s
FULL JOIN pg_catalog.pg_stat_replication r ON r.pid OPERATOR(pg_catalog.=) s.active_pid
WHERE s.slot_type IS DISTINCT FROM 'logical'
ORDER BY 1, 2
"""

# Where pg_stat_statements is installed in the connected database (its schema), if it is.
STATEMENTS_SCHEMA = """
SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""

# The statements of every database of the server (the view is server-wide), slowest total
# first, without the platform's own (superuser roles: no customer has one). PostgreSQL 13+
# column names. The schema is composed with psycopg.sql.Identifier.
STATEMENTS = """
SELECT s.queryid::pg_catalog.text, s.query, s.calls::pg_catalog.int8,
       s.mean_exec_time::pg_catalog.float8, s.total_exec_time::pg_catalog.float8,
       s.rows::pg_catalog.int8, s.shared_blks_hit::pg_catalog.int8, s.shared_blks_read::pg_catalog.int8,
       s.temp_blks_written::pg_catalog.int8, d.datname::pg_catalog.text
FROM {schema}.pg_stat_statements s
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
WHERE s.calls > 0 AND s.queryid IS NOT NULL
  AND s.userid NOT IN (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolsuper)
ORDER BY s.total_exec_time DESC
LIMIT %s
"""

# Every customer statement of the server at once: (total execution ms, calls).
STATEMENT_TOTALS = """
SELECT coalesce(pg_catalog.sum(s.total_exec_time), 0)::pg_catalog.float8, coalesce(pg_catalog.sum(s.calls), 0)::pg_catalog.int8
FROM {schema}.pg_stat_statements s
WHERE s.userid NOT IN (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolsuper)
"""

# What the statements' suggestions name: the memory settings and the block size of the counters.
SETTINGS = """
SELECT pg_catalog.current_setting('shared_buffers'), pg_catalog.current_setting('work_mem'),
       pg_catalog.current_setting('block_size')::pg_catalog.int4
"""
