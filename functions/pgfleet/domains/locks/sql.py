"""The SQL of the locks domain. Every relation and function is schema-qualified; it runs
through the SQL seam (ports.sql), whose sessions pin search_path to pg_catalog, pg_temp."""

from __future__ import annotations

# One row per lock (granted or waited for) of a client backend or an autovacuum worker, with
# its session: pg_locks is the whole server's, so this runs in any database. Relation names
# are resolved per database afterwards (RELATIONS): pg_class is one database's catalog.
# blocking_pids only for the waiters (pg_blocking_pids is not free).
LOCKS = """
SELECT l.locktype, l.mode, l.granted, l.pid, l.database, l.relation,
       l.transactionid::pg_catalog.text, l.virtualxid,
       a.usename::pg_catalog.text, a.application_name, a.client_addr::pg_catalog.text,
       a.datname::pg_catalog.text, a.state, a.backend_type, a.query,
       a.xact_start, a.query_start, a.state_change, a.wait_event_type,
       l.waitstart,
       CASE WHEN l.granted THEN NULL ELSE pg_catalog.pg_blocking_pids(l.pid) END,
       pg_catalog.clock_timestamp()
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE a.pid <> pg_catalog.pg_backend_pid()
ORDER BY l.granted, l.pid
"""

# The sessions of the server (who may block, what they run), without locks.
SESSIONS = """
SELECT a.pid, a.usename::pg_catalog.text, a.application_name, a.client_addr::pg_catalog.text,
       a.datname::pg_catalog.text, a.state, a.backend_type, a.query, a.xact_start, a.query_start,
       a.state_change
FROM pg_catalog.pg_stat_activity a
WHERE a.pid <> pg_catalog.pg_backend_pid()
"""

RELATIONS = """
SELECT c.oid::pg_catalog.int8, n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relkind::pg_catalog.text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY (%s::pg_catalog.oid[])
"""

# The server's databases (oid -> name) and its superuser roles (the platform's own), in one read.
CATALOG = """
SELECT 'database', oid::pg_catalog.int8, datname::pg_catalog.text FROM pg_catalog.pg_database
UNION ALL
SELECT 'superuser', oid::pg_catalog.int8, rolname::pg_catalog.text FROM pg_catalog.pg_roles WHERE rolsuper
"""

SESSION = """
SELECT a.pid, a.usename::pg_catalog.text, a.application_name, a.backend_type, a.query, a.state,
       coalesce(r.rolsuper, false)
FROM pg_catalog.pg_stat_activity a
LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.usesysid
WHERE a.pid = %s
"""

CANCEL = "SELECT pg_catalog.pg_cancel_backend(%s)"
TERMINATE = "SELECT pg_catalog.pg_terminate_backend(%s, 2000)"

# Who still waits on `pid` (a waiter freed by a cancel no longer lists it).
WAITING_ON = """
SELECT a.pid FROM pg_catalog.pg_stat_activity a
WHERE %s = ANY (pg_catalog.pg_blocking_pids(a.pid))
"""

DATABASE_OIDS = "SELECT oid::pg_catalog.int8, datname::pg_catalog.text FROM pg_catalog.pg_database"
