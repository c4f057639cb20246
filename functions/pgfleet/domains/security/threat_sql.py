"""SQL threat detection and mitigation run inside a managed server (privileged sessions with
search_path pinned, every relation and function schema-qualified, identifiers composed with
psycopg.sql; see pgfleet.ports.sql)."""

from __future__ import annotations

from psycopg import sql

# Roles holding an attribute that raises privileges (the catalog diff's first part).
ROLE_ATTRIBUTES = """
SELECT r.rolname::pg_catalog.text, r.rolsuper, r.rolcreaterole, r.rolreplication, r.rolbypassrls
FROM pg_catalog.pg_roles r
WHERE (r.rolsuper OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls)
ORDER BY r.rolname
"""
# Who is a member of which role (the diff keeps those of privileged roles).
MEMBERSHIPS = """
SELECT m.rolname::pg_catalog.text, g.rolname::pg_catalog.text
FROM pg_catalog.pg_auth_members a
JOIN pg_catalog.pg_roles m ON m.oid = a.member
JOIN pg_catalog.pg_roles g ON g.oid = a.roleid
ORDER BY 1, 2
"""
DATABASES = (
    "SELECT d.datname::pg_catalog.text FROM pg_catalog.pg_database d "
    "WHERE d.datallowconn AND NOT d.datistemplate ORDER BY d.datname LIMIT 50"
)
# SECURITY DEFINER routines without search_path in their own settings (outside the catalogs).
DEFINERS = """
SELECT n.nspname::pg_catalog.text || '.' || p.proname::pg_catalog.text
       || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')'
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(p.proconfig) c WHERE c LIKE 'search\\_path=%')
ORDER BY 1
LIMIT 500
"""
ROLE_LOGIN = "SELECT r.rolcanlogin, r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = %s"


def set_login(role: str, login: bool) -> sql.Composed:
    return sql.SQL("ALTER ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(sql.Identifier(role))


# Ends the sessions of a role just made NOLOGIN (a lock must not leave the intruder connected).
END_ROLE_SESSIONS = """
SELECT pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(a.pid))
FROM pg_catalog.pg_stat_activity a
WHERE a.usename = %s AND a.pid <> pg_catalog.pg_backend_pid()
"""
