"""SQL the compliance controls run inside a managed server: privileged and read-only, every
relation and function schema-qualified (pgfleet.ports.sql). The catalog
(data/controls.json) names a query here by its key; its text goes into the evidence."""

from __future__ import annotations

from typing import LiteralString

DATABASES = (
    "SELECT d.datname FROM pg_catalog.pg_database d "
    "WHERE d.datallowconn AND NOT d.datistemplate ORDER BY d.datname LIMIT 50"
)

QUERIES: dict[str, LiteralString] = {
    "password_encryption": "SELECT pg_catalog.current_setting('password_encryption')",
    "ssl": "SELECT pg_catalog.current_setting('ssl')",
    "log_connections": "SELECT pg_catalog.current_setting('log_connections')",
    "log_disconnections": "SELECT pg_catalog.current_setting('log_disconnections')",
    "shared_preload_libraries": "SELECT pg_catalog.current_setting('shared_preload_libraries')",
    "data_checksums": "SELECT pg_catalog.current_setting('data_checksums')",
    "md5_passwords": (
        "SELECT a.rolname FROM pg_catalog.pg_authid a "
        "WHERE pg_catalog.left(a.rolpassword, 3) = 'md5' ORDER BY a.rolname LIMIT 100"
    ),
    "weak_hba_rules": (
        "SELECT h.line_number, h.type, pg_catalog.array_to_string(h.database, ','), "
        "pg_catalog.array_to_string(h.user_name, ','), COALESCE(h.address, ''), h.auth_method "
        "FROM pg_catalog.pg_hba_file_rules h "
        "WHERE h.type <> 'local' AND h.auth_method IN ('md5', 'password', 'trust') ORDER BY h.line_number"
    ),
    # %s: the server's app and tenant roles (from the metadata store)
    "privileged_managed_roles": (
        "SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolreplication FROM pg_catalog.pg_roles r "
        "WHERE r.rolname = ANY(%s) AND (r.rolsuper OR r.rolcreaterole OR r.rolreplication) ORDER BY r.rolname"
    ),
    # extension members are the extension's: only functions somebody created are judged
    "security_definer_without_search_path": (
        "SELECT pg_catalog.current_database(), n.nspname, p.proname, pg_catalog.pg_get_userbyid(p.proowner) "
        "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(p.proconfig) AS c(setting) "
        "WHERE pg_catalog.starts_with(c.setting, 'search_path=')) "
        "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass "
        "AND e.objid = p.oid AND e.deptype = 'e') ORDER BY n.nspname, p.proname LIMIT 100"
    ),
    "public_schema_create": (
        "SELECT pg_catalog.current_database(), n.nspname FROM pg_catalog.pg_namespace n "
        "WHERE n.nspname = 'public' AND pg_catalog.has_schema_privilege('public', n.oid, 'CREATE')"
    ),
    # %s twice: [{"role", "db"}] of the server's app and tenant roles and the database each owns
    "cross_database_connect": (
        "SELECT t.role, d.datname "
        "FROM pg_catalog.jsonb_to_recordset(%s::pg_catalog.jsonb) AS t(role pg_catalog.text, db pg_catalog.text) "
        "JOIN pg_catalog.pg_roles r ON r.rolname = t.role "
        "JOIN pg_catalog.pg_database d ON d.datname <> t.db AND d.datname IN "
        "(SELECT u.db FROM pg_catalog.jsonb_to_recordset(%s::pg_catalog.jsonb) AS u(role pg_catalog.text, db pg_catalog.text)) "
        "WHERE pg_catalog.has_database_privilege(r.oid, d.oid, 'CONNECT') ORDER BY 1, 2"
    ),
}
