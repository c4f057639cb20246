"""The SQL of the connection pool analysis and the cache analysis. Every relation and function
is schema-qualified; it runs through the SQL seam (ports.sql), whose sessions pin search_path
to pg_catalog, pg_temp. Reads only, but for the creation of pg_buffercache in the platform's
own schema of the `postgres` database (CREATE_* below). Schemas are composed with
psycopg.sql.Identifier, never formatted into the text."""

from __future__ import annotations

# --- connections -------------------------------------------------------------------------------

# Every client backend but this session: (database, user, application, state, waits for a lock,
# seconds since backend_start, seconds idle in transaction or NULL).
SESSIONS = """
SELECT coalesce(s.datname::pg_catalog.text, ''), coalesce(s.usename::pg_catalog.text, ''),
       coalesce(s.application_name, ''), coalesce(s.state, ''),
       coalesce(s.wait_event_type = 'Lock', false),
       extract(epoch FROM pg_catalog.clock_timestamp() - s.backend_start)::pg_catalog.float8,
       CASE WHEN s.state LIKE 'idle in transaction%%'
            THEN extract(epoch FROM pg_catalog.clock_timestamp() - s.state_change)::pg_catalog.float8 END
FROM pg_catalog.pg_stat_activity s
WHERE s.backend_type = 'client backend' AND s.pid <> pg_catalog.pg_backend_pid()
"""

# (name, setting, unit) of the settings named in the one parameter (a list).
SETTINGS = """
SELECT s.name::pg_catalog.text, s.setting, s.unit FROM pg_catalog.pg_settings s
WHERE s.name = ANY(%s::pg_catalog.text[])
"""

# --- cache: extensions -------------------------------------------------------------------------

# The schema an extension is created in, in the connected database (no row: not created).
EXTENSION_SCHEMA = """
SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = %s
"""
EXTENSION_AVAILABLE = "SELECT 1 FROM pg_catalog.pg_available_extensions a WHERE a.name = %s"
SCHEMA_EXISTS = "SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = %s"
IN_RECOVERY = "SELECT pg_catalog.pg_is_in_recovery()"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
REVOKE_SCHEMA = "REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"
CREATE_BUFFERCACHE = "CREATE EXTENSION IF NOT EXISTS pg_buffercache WITH SCHEMA {schema}"

# --- cache: shared buffers (pg_buffercache, server-wide, read in the `postgres` database) -------

# Per usage count (NULL: an unused buffer, whose columns are all NULL): (usagecount, buffers,
# dirty, pinned). One statement, so the totals and the distribution are of the same pass.
BUFFERS = """
SELECT b.usagecount::pg_catalog.int4, pg_catalog.count(*)::pg_catalog.int8,
       pg_catalog.count(*) FILTER (WHERE b.isdirty)::pg_catalog.int8,
       pg_catalog.count(*) FILTER (WHERE b.pinning_backends > 0)::pg_catalog.int8
FROM {schema}.pg_buffercache b
GROUP BY 1 ORDER BY 1
"""

# The relations of one database (by name) with the most buffers: (tablespace, filenode,
# buffers, dirty). Names can only be resolved in that database (RELATIONS).
TOP_FILENODES = """
SELECT b.reltablespace::pg_catalog.int8, b.relfilenode::pg_catalog.int8, pg_catalog.count(*)::pg_catalog.int8,
       pg_catalog.count(*) FILTER (WHERE b.isdirty)::pg_catalog.int8
FROM {schema}.pg_buffercache b
JOIN pg_catalog.pg_database d ON d.oid = b.reldatabase
WHERE d.datname = %s
GROUP BY 1, 2 ORDER BY 3 DESC, 2 LIMIT %s
"""

# In the database of the buffers: (position, schema, relation, relkind) of (tablespace,
# filenode) pairs given as two arrays. pg_filenode_relation maps mapped catalogs too.
RELATIONS = """
SELECT f.ord::pg_catalog.int4, n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relkind::pg_catalog.text
FROM ROWS FROM (pg_catalog.unnest(%s::pg_catalog.int8[]), pg_catalog.unnest(%s::pg_catalog.int8[]))
     WITH ORDINALITY AS f(ts, fn, ord)
LEFT JOIN pg_catalog.pg_class c
       ON c.oid = pg_catalog.pg_filenode_relation(f.ts::pg_catalog.oid, f.fn::pg_catalog.oid)
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
ORDER BY 1
"""

# --- cache: hit ratios (in the analysed database) ----------------------------------------------

DATABASE_BLOCKS = """
SELECT d.blks_hit::pg_catalog.int8, d.blks_read::pg_catalog.int8
FROM pg_catalog.pg_stat_database d WHERE d.datname = pg_catalog.current_database()
"""

# (heap hit, heap read, index hit, index read) of the user tables of the connected database.
TABLE_BLOCKS = """
SELECT coalesce(pg_catalog.sum(t.heap_blks_hit), 0)::pg_catalog.int8,
       coalesce(pg_catalog.sum(t.heap_blks_read), 0)::pg_catalog.int8,
       coalesce(pg_catalog.sum(t.idx_blks_hit), 0)::pg_catalog.int8,
       coalesce(pg_catalog.sum(t.idx_blks_read), 0)::pg_catalog.int8
FROM pg_catalog.pg_statio_user_tables t
"""

# --- cache: evictions --------------------------------------------------------------------------

# PostgreSQL 16+: shared buffers evicted to make room, every backend type, since the reset.
IO_EVICTIONS = """
SELECT coalesce(pg_catalog.sum(i.evictions), 0)::pg_catalog.int8
FROM pg_catalog.pg_stat_io i WHERE i.object = 'relation'
"""
IO_VERSION_NUM = 160000
# PostgreSQL 15: no eviction counter; writes of dirty buffers by backends and the bgwriter.
BGWRITER_WRITES = """
SELECT b.buffers_backend::pg_catalog.int8, b.buffers_clean::pg_catalog.int8 FROM pg_catalog.pg_stat_bgwriter b
"""

# --- cache: plans (pg_stat_statements, in the database where it is created) --------------------

STATEMENT_PLANS = """
SELECT coalesce(pg_catalog.sum(s.plans), 0)::pg_catalog.int8, coalesce(pg_catalog.sum(s.calls), 0)::pg_catalog.int8
FROM {schema}.pg_stat_statements s
WHERE s.userid NOT IN (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolsuper)
"""
