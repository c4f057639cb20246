"""The SQL of query analysis and EXPLAIN. Every relation and function is schema-qualified.

The pg_stat_statements reads run through privileged sessions (ports.sql.session, search_path
pinned); SESSION and RELATION_ROWS run in the customer's session (ports.sql.customer_session:
`$n` placeholders, the role's own search_path, hence OPERATOR(pg_catalog.=)). Nothing here
writes."""

from __future__ import annotations

# Where pg_stat_statements is installed in the connected database (its schema), if it is.
STATEMENTS_SCHEMA = """
SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""

# The customer statements of the server (the view is server-wide; the platform's own are
# those of superuser roles), PostgreSQL 13+ columns, optionally of one database, by total
# time. The schema is composed with psycopg.sql.Identifier. (queryid, query, calls, total ms,
# min ms, max ms, rows, shared hit, shared read, temp written, database, role, dbid, userid)
STATEMENTS = """
SELECT s.queryid::pg_catalog.text, s.query, s.calls::pg_catalog.int8, s.total_exec_time::pg_catalog.float8,
       s.min_exec_time::pg_catalog.float8, s.max_exec_time::pg_catalog.float8, s.rows::pg_catalog.int8,
       s.shared_blks_hit::pg_catalog.int8, s.shared_blks_read::pg_catalog.int8,
       s.temp_blks_written::pg_catalog.int8, d.datname::pg_catalog.text, r.rolname::pg_catalog.text,
       s.dbid::pg_catalog.int8, s.userid::pg_catalog.int8
FROM {schema}.pg_stat_statements s
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
WHERE s.calls > 0 AND s.queryid IS NOT NULL
  AND s.userid NOT IN (SELECT x.oid FROM pg_catalog.pg_roles x WHERE x.rolsuper)
  AND (%(database)s::pg_catalog.text IS NULL OR d.datname = %(database)s::pg_catalog.text)
ORDER BY s.total_exec_time DESC
LIMIT %(limit)s
"""

# Every customer statement at once: (total execution ms, calls).
STATEMENT_TOTALS = """
SELECT coalesce(pg_catalog.sum(s.total_exec_time), 0)::pg_catalog.float8,
       coalesce(pg_catalog.sum(s.calls), 0)::pg_catalog.int8
FROM {schema}.pg_stat_statements s
WHERE s.userid NOT IN (SELECT x.oid FROM pg_catalog.pg_roles x WHERE x.rolsuper)
"""

# When the counters were last reset (pg_stat_statements_info, 1.9+ = PostgreSQL 14+), and the
# settings the suggestions name.
SETTINGS = """
SELECT pg_catalog.current_setting('work_mem'), pg_catalog.current_setting('shared_buffers'),
       pg_catalog.current_setting('block_size')::pg_catalog.int4
"""
STATS_RESET = "SELECT i.stats_reset FROM {schema}.pg_stat_statements_info i"

# In the customer's session: server version, work_mem, and the role it runs as.
SESSION = """
SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4,
       pg_catalog.current_setting('work_mem'), CURRENT_USER::pg_catalog.text
"""

# Rows of the tables of a plan, by name (the plan gives no schema): reltuples, or the size in
# 100-byte rows where the table was never analyzed (reltuples -1); the one visible on the
# role's search_path first.
RELATION_ROWS = """
SELECT DISTINCT ON (c.relname) c.relname::pg_catalog.text,
       CASE WHEN c.reltuples OPERATOR(pg_catalog.>=) 0 THEN c.reltuples::pg_catalog.float8
            ELSE (pg_catalog.pg_relation_size(c.oid) OPERATOR(pg_catalog./) 100)::pg_catalog.float8 END
FROM pg_catalog.pg_class c
WHERE c.relname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])
  AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,m,p}'::pg_catalog."char"[])
ORDER BY c.relname, pg_catalog.pg_table_is_visible(c.oid) DESC
"""
