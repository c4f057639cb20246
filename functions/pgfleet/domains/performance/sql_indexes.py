"""SQL of the index analysis and optimization, run through the SQL seam (search_path pinned
to `pg_catalog, pg_temp`: every relation and function is schema-qualified; identifiers are
composed with psycopg.sql, never formatted into the text)."""

from __future__ import annotations

SERVER = """
SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4,
       pg_catalog.current_setting('block_size')::pg_catalog.int4,
       d.oid::pg_catalog.int8,
       coalesce(s.stats_reset, pg_catalog.pg_postmaster_start_time()),
       pg_catalog.now()
FROM pg_catalog.pg_database d
LEFT JOIN pg_catalog.pg_stat_database s ON s.datid = d.oid
WHERE d.datname = pg_catalog.current_database()
"""

# Every index of the database in one statement (no per-index queries): its table, method,
# flags, columns (NULL for an expression), usage and size. `{last_used}` is
# `s.last_idx_scan` on PostgreSQL 16+, NULL before.
INDEXES = """
SELECT n.nspname::pg_catalog.text, t.relname::pg_catalog.text, i.relname::pg_catalog.text,
       am.amname::pg_catalog.text,
       pg_catalog.pg_relation_size(i.oid)::pg_catalog.int8, i.relpages::pg_catalog.int8,
       greatest(t.reltuples, 0)::pg_catalog.float8,
       x.indisunique, x.indisprimary, x.indisvalid, x.indisreplident,
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = x.indexrelid),
       ARRAY(SELECT a.attname::pg_catalog.text
             FROM pg_catalog.unnest(x.indkey::pg_catalog.int2[]) WITH ORDINALITY k(attnum, o)
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             WHERE k.o <= x.indnkeyatts
             ORDER BY k.o),
       pg_catalog.pg_get_expr(x.indexprs, x.indrelid), pg_catalog.pg_get_expr(x.indpred, x.indrelid),
       x.indclass::pg_catalog.oid[]::pg_catalog.text, x.indoption::pg_catalog.int2[]::pg_catalog.text,
       coalesce(s.idx_scan, 0)::pg_catalog.int8, coalesce(s.idx_tup_read, 0)::pg_catalog.int8,
       coalesce(s.idx_tup_fetch, 0)::pg_catalog.int8, {last_used},
       pg_catalog.pg_get_indexdef(x.indexrelid), t.oid::pg_catalog.int8,
       coalesce((SELECT pg_catalog.substring(o, 'fillfactor=([0-9]+)')::pg_catalog.int4
                 FROM pg_catalog.unnest(i.reloptions) o WHERE o LIKE 'fillfactor=%%'), 90)
FROM pg_catalog.pg_index x
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
JOIN pg_catalog.pg_am am ON am.oid = i.relam
LEFT JOIN pg_catalog.pg_stat_user_indexes s ON s.indexrelid = x.indexrelid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgfleet_stats', 'pgfleet_hypopg')
  AND n.nspname !~ '^pg_toast' AND t.relkind IN ('r', 'm', 'p')
ORDER BY n.nspname, t.relname, i.relname
"""

# Every table: rows, scans and the row writes since the statistics were reset.
TABLES = """
SELECT c.oid::pg_catalog.int8, n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
       greatest(c.reltuples, 0)::pg_catalog.float8, coalesce(s.n_live_tup, 0)::pg_catalog.int8,
       coalesce(s.seq_scan, 0)::pg_catalog.int8, coalesce(s.idx_scan, 0)::pg_catalog.int8,
       (coalesce(s.n_tup_ins, 0) + coalesce(s.n_tup_upd, 0) + coalesce(s.n_tup_del, 0))::pg_catalog.int8
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgfleet_stats', 'pgfleet_hypopg')
  AND n.nspname !~ '^pg_toast' AND c.relkind IN ('r', 'm', 'p')
"""

# The width and null fraction of every analysed column of a customer table (for the bloat
# estimate), from pg_stats.
COLUMN_STATS = """
SELECT s.schemaname::pg_catalog.text, s.tablename::pg_catalog.text, s.attname::pg_catalog.text,
       s.avg_width::pg_catalog.int4, s.null_frac::pg_catalog.float8
FROM pg_catalog.pg_stats s
WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema', 'pgfleet_stats', 'pgfleet_hypopg')
  AND s.schemaname !~ '^pg_toast'
"""

# The columns of the tables a statement names (to resolve an unqualified column).
COLUMNS = """
SELECT a.attrelid::pg_catalog.int8, a.attname::pg_catalog.text
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = ANY(%s::pg_catalog.oid[]) AND a.attnum > 0 AND NOT a.attisdropped
"""

STATEMENTS_SCHEMA = """
SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""

# The heaviest customer statements of one database (by total time), without superuser roles'
# (the platform's own). `{schema}` is the extension's schema.
STATEMENTS = """
SELECT s.queryid::pg_catalog.text, s.query, s.calls::pg_catalog.int8,
       s.total_exec_time::pg_catalog.float8, s.mean_exec_time::pg_catalog.float8,
       pg_catalog.pg_get_userbyid(s.userid)::pg_catalog.text
FROM {schema}.pg_stat_statements s
WHERE s.dbid = %s::pg_catalog.oid AND s.calls > 0 AND s.queryid IS NOT NULL
  AND s.userid NOT IN (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolsuper)
ORDER BY s.total_exec_time DESC
LIMIT %s
"""

# When pg_stat_statements was last reset (PostgreSQL 14+), else when the server started.
STATEMENTS_SINCE = """
SELECT coalesce((SELECT i.stats_reset FROM {schema}.pg_stat_statements_info i),
                pg_catalog.pg_postmaster_start_time())
"""

# One statement's calls and total execution time so far (every role's).
STATEMENT_MEAN = """
SELECT pg_catalog.sum(s.calls)::pg_catalog.int8, pg_catalog.sum(s.total_exec_time)::pg_catalog.float8
FROM {schema}.pg_stat_statements s
WHERE s.queryid::pg_catalog.text = %s
  AND s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = %s)
"""

# The search_path a role's sessions get in this database (ALTER ROLE ... SET), most specific
# first; none: PostgreSQL's default.
ROLE_SEARCH_PATH = """
SELECT pg_catalog.substring(cfg, '^search_path=(.*)$')
FROM pg_catalog.pg_db_role_setting s
JOIN pg_catalog.pg_database d ON d.datname = pg_catalog.current_database()
CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) cfg
WHERE cfg LIKE 'search_path=%%'
  AND s.setrole IN (0, (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = %s))
  AND s.setdatabase IN (0, d.oid)
ORDER BY (s.setrole <> 0) DESC, (s.setdatabase <> 0) DESC
LIMIT 1
"""
DEFAULT_SEARCH_PATH = '"$user", public'

HYPOPG_SCHEMA = """
SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'hypopg'
"""
HYPOPG_AVAILABLE = "SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'hypopg'"
# hypopg goes into a schema of its own, usable by every role (its functions only make
# hypothetical indexes, local to the calling backend).
HYPOPG_OWN_SCHEMA = "pgfleet_hypopg"

# `CREATE INDEX ON schema.table USING method (col, ...)` built by the server itself (every
# name through quote_ident), for hypopg_create_index. `{schema}` is hypopg's schema. Run in a
# customer session: `$n` placeholders.
HYPOTHETICAL_INDEX = """
SELECT h.indexrelid::pg_catalog.int8, {schema}.hypopg_relation_size(h.indexrelid)::pg_catalog.int8
FROM {schema}.hypopg_create_index(
  'CREATE INDEX ON ' || pg_catalog.quote_ident($1::pg_catalog.text) || '.' || pg_catalog.quote_ident($2::pg_catalog.text)
  || ' USING ' || pg_catalog.quote_ident($3::pg_catalog.text) || ' ('
  || pg_catalog.array_to_string(ARRAY(
       SELECT pg_catalog.quote_ident(c) FROM pg_catalog.unnest($4::pg_catalog.text[]) WITH ORDINALITY u(c, o)
       ORDER BY u.o), ', ')
  || ')') h
"""
HYPOPG_RESET = "SELECT {schema}.hypopg_reset()"

INVALID_INDEX = """
SELECT x.indisvalid FROM pg_catalog.pg_index x
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
WHERE n.nspname = %s AND i.relname = %s
"""
