"""SQL the maintenance domain runs inside a managed server (privileged sessions of the SQL
seam: search_path pinned, every object schema-qualified)."""

from __future__ import annotations

# Every user table with what the choices need: dead and live tuples, the autovacuum
# thresholds (the table's own reloptions first, then the server's settings), statistics'
# age, XID age, sizes. One row per table.
TABLES = """
SELECT n.nspname, c.relname, c.oid::pg_catalog.int8,
       s.n_dead_tup, s.n_live_tup, GREATEST(c.reltuples, 0)::pg_catalog.float8,
       COALESCE((SELECT pg_catalog.split_part(o, '=', 2)::pg_catalog.float8
                   FROM pg_catalog.unnest(c.reloptions) o WHERE o LIKE 'autovacuum_vacuum_threshold=%'),
                pg_catalog.current_setting('autovacuum_vacuum_threshold')::pg_catalog.float8),
       COALESCE((SELECT pg_catalog.split_part(o, '=', 2)::pg_catalog.float8
                   FROM pg_catalog.unnest(c.reloptions) o WHERE o LIKE 'autovacuum_vacuum_scale_factor=%'),
                pg_catalog.current_setting('autovacuum_vacuum_scale_factor')::pg_catalog.float8),
       COALESCE((SELECT pg_catalog.split_part(o, '=', 2)::pg_catalog.float8
                   FROM pg_catalog.unnest(c.reloptions) o WHERE o LIKE 'autovacuum_analyze_threshold=%'),
                pg_catalog.current_setting('autovacuum_analyze_threshold')::pg_catalog.float8),
       COALESCE((SELECT pg_catalog.split_part(o, '=', 2)::pg_catalog.float8
                   FROM pg_catalog.unnest(c.reloptions) o WHERE o LIKE 'autovacuum_analyze_scale_factor=%'),
                pg_catalog.current_setting('autovacuum_analyze_scale_factor')::pg_catalog.float8),
       s.n_mod_since_analyze,
       GREATEST(s.last_vacuum, s.last_autovacuum), GREATEST(s.last_analyze, s.last_autoanalyze),
       pg_catalog.age(c.relfrozenxid)::pg_catalog.int8,
       pg_catalog.current_setting('autovacuum_freeze_max_age')::pg_catalog.int8,
       pg_catalog.pg_table_size(c.oid), pg_catalog.pg_total_relation_size(c.oid)
  FROM pg_catalog.pg_stat_user_tables s
  JOIN pg_catalog.pg_class c ON c.oid = s.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm')
 ORDER BY n.nspname, c.relname
"""

MATERIALIZED_VIEWS = """
SELECT n.nspname, c.relname, c.relispopulated,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL),
       pg_catalog.pg_total_relation_size(c.oid)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'm' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
 ORDER BY n.nspname, c.relname
"""

# Sequences and how much of their range is used (PgHero's check: 90 %).
SEQUENCES = """
SELECT s.schemaname, s.sequencename,
       CASE WHEN s.increment_by > 0
            THEN (COALESCE(s.last_value, s.start_value) - s.min_value)::pg_catalog.float8
                 / NULLIF(s.max_value - s.min_value, 0)::pg_catalog.float8
            ELSE (s.max_value - COALESCE(s.last_value, s.start_value))::pg_catalog.float8
                 / NULLIF(s.max_value - s.min_value, 0)::pg_catalog.float8 END
  FROM pg_catalog.pg_sequences s
 WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')
"""

DATABASE_XID_AGE = """
SELECT pg_catalog.age(d.datfrozenxid)::pg_catalog.int8,
       pg_catalog.current_setting('autovacuum_freeze_max_age')::pg_catalog.int8
  FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()
"""

BACKEND = "SELECT pg_catalog.pg_backend_pid(), pg_catalog.current_setting('data_directory')"

# Size and dead tuples of one relation (a table, a materialized view or an index) by name.
RELATION = """
SELECT pg_catalog.pg_total_relation_size(c.oid), s.n_dead_tup
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
 WHERE n.nspname = %s AND c.relname = %s
"""

SET_CONFIG = "SELECT pg_catalog.set_config(%s, %s, false)"

PROGRESS_VACUUM = """
SELECT p.phase, p.heap_blks_total, p.heap_blks_scanned, p.heap_blks_vacuumed
  FROM pg_catalog.pg_stat_progress_vacuum p WHERE p.pid = %s
"""

PROGRESS_INDEX = """
SELECT p.phase, p.blocks_total, p.blocks_done, p.tuples_total, p.tuples_done
  FROM pg_catalog.pg_stat_progress_create_index p WHERE p.pid = %s
"""

PROGRESS_CLUSTER = """
SELECT p.phase, p.heap_blks_total, p.heap_blks_scanned
  FROM pg_catalog.pg_stat_progress_cluster p WHERE p.pid = %s
"""

# The platform's own idle sessions (application_name pgfleet...), idle since before a time.
PLATFORM_IDLE_SESSIONS = """
SELECT a.pid FROM pg_catalog.pg_stat_activity a
 WHERE a.application_name LIKE 'pgfleet%%' AND a.state = 'idle' AND a.pid <> pg_catalog.pg_backend_pid()
   AND a.state_change < pg_catalog.now() - pg_catalog.make_interval(secs => %s)
"""

TERMINATE = "SELECT pg_catalog.pg_terminate_backend(%s)"
