"""A customer never becomes superuser, and never escapes its quota, against a real PostgreSQL 15
server of the local engine.

Customers here are the instance's application user (it owns the instance's database) and
tenant users of both modes. They plant code where a careless superuser session would run it
(functions and operators shadowing pg_catalog's, a database-level search_path), hide code in
a dump that a restore runs (a CHECK constraint calling their function), write large objects,
and squat the schema a tenant is about to get. The services run for real on top of the local
engine (the quotas task, tenant creation and deletion, logical backups and restores); only the
metadata store, queue and secrets are in-memory fakes. Tests run in file order on one server.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.adapters.engines.local.restore_host import LocalRestoreHost
from pgfleet.core.auth import Principal
from pgfleet.core.errors import AlreadyExists, EngineError
from pgfleet.core.models import utcnow_iso
from pgfleet.domains import archive
from pgfleet.domains.instances import service as instances
from pgfleet.domains.quotas import service as quotas
from pgfleet.domains.quotas.models import QuotaUpdate
from pgfleet.domains.tenants import service as tenants
from pgfleet.domains.tenants.models import TenantCreate
from tests.helpers import free_port, scratch_home
from tests.unit.fakes import FakePorts

pytestmark = pytest.mark.skipif("15" not in local_pg.installed_binaries(), reason="needs PostgreSQL 15")

HOST = "127.0.0.1"
APP_PASSWORD = secrets.token_urlsafe(16)
OPERATOR = Principal(
    sub="tester", tenant_id="acme", roles=("operator",), permissions=frozenset({"postgres:*"})
)
DEAD_ETCD = "http://127.0.0.1:9"  # no cluster here
CREDENTIALS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def ports() -> Iterator[FakePorts]:
    with scratch_home("pgfleet-sec-") as home:
        fake = FakePorts(home)
        engine = LocalPostgresEngine(home / "data", host=HOST)
        fake.engine = engine  # type: ignore[assignment]
        fake.restore_host = LocalRestoreHost(  # type: ignore[assignment]
            home, engine, LocalPatroniEngine(home / "data", DEAD_ETCD, host=HOST), DEAD_ETCD
        )
        yield fake


@pytest.fixture(scope="module")
def instance(ports: FakePorts) -> Iterator[dict[str, Any]]:
    iid = f"pgi-{secrets.token_hex(6)}"
    now = utcnow_iso()
    record = {
        "id": iid, "tenant_id": "acme", "name": "sec-db", "status": "running", "status_reason": "",
        "desired_state": "running", "version": "15", "cpu": 1, "memory": 512, "storage": 2,
        "endpoint": {"host": HOST, "port": free_port()}, "database": "app", "username": "app_admin",
        "created_at": now, "updated_at": now, "operation_id": None,
    }  # fmt: skip
    ports.store.create("instance", record)
    archive.service.ensure_cipher(ports, iid)  # what configure_archiving leaves: final dumps use it
    spec = instances.server_spec(record)
    ports.engine.provision(spec)
    ports.engine.start(spec)
    ports.engine.ensure_database(iid, "app", "app_admin", APP_PASSWORD)
    yield record
    ports.engine.destroy(iid)


def _connect(instance: dict[str, Any], user: str, password: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=HOST, port=instance["endpoint"]["port"], user=user, password=password, dbname=dbname,
        connect_timeout=3, autocommit=True,
    )  # fmt: skip


def _as_app(instance: dict[str, Any], dbname: str = "app") -> psycopg.Connection:
    return _connect(instance, "app_admin", APP_PASSWORD, dbname)


def _as_tenant(instance: dict[str, Any], tenant: str) -> psycopg.Connection:
    creds = CREDENTIALS[tenant]
    return _connect(instance, creds["username"], creds["password"], conninfo_to_dict(creds["uri"])["dbname"])


def _superuser(ports: FakePorts, instance: dict[str, Any], sql: str, dbname: str = "postgres") -> list[Any]:
    with ports.engine.connect(instance["id"], dbname) as conn:  # type: ignore[attr-defined]
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _superusers(ports: FakePorts, instance: dict[str, Any]) -> list[str]:
    return [
        r[0] for r in _superuser(ports, instance, "SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1")
    ]


def _tenant(ports: FakePorts, instance: dict[str, Any], **body: Any) -> dict[str, Any]:
    created = tenants.create(ports, OPERATOR, "instance", instance["id"], TenantCreate(**body))  # type: ignore[arg-type]
    CREDENTIALS[created["tenant_id"]] = created["credentials"]
    return created


def _refused(conn: psycopg.Connection, statement: str) -> str:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)  # type: ignore[arg-type]
    return str(caught.value)


# --- reserved names, at the engine too ---------------------------------------------------------


def test_the_engine_refuses_to_hand_a_platform_role_or_database_to_an_application(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    _superuser(ports, instance, "CREATE ROLE rewinder LOGIN")  # as Patroni creates it on a cluster
    _superuser(ports, instance, "CREATE ROLE streamer REPLICATION LOGIN")
    try:
        for database, username in (("app", "rewinder"), ("postgres", "app_admin"), ("template1", "app_admin"),
                                   ("app", "streamer"), ("app", "pgfleet_t_x_owner")):  # fmt: skip
            with pytest.raises(EngineError, match="refusing to manage"):
                ports.engine.ensure_database(iid, database, username, "a password long enough")
        assert _superuser(ports, instance, "SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid"
                                           " WHERE rolname = 'rewinder'") == [(True, True)]  # fmt: skip
        assert _superuser(ports, instance, "SELECT pg_get_userbyid(datdba) FROM pg_database"
                                           " WHERE datname = 'postgres'") == [("postgres",)]  # fmt: skip
    finally:
        _superuser(ports, instance, "DROP ROLE rewinder, streamer")


# --- schema squatting (a schema or database pgfleet did not create) ----------------------------------


def test_a_schema_the_application_made_for_a_future_tenant_is_refused(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    with _as_app(instance) as conn:
        conn.execute("CREATE SCHEMA tenant_sq")
        conn.execute("COMMENT ON SCHEMA tenant_sq IS 'pgfleet:tenant:tenant-sq'")  # the marker, forged
        conn.execute("CREATE TABLE tenant_sq.spy (x int)")
    with pytest.raises(
        AlreadyExists, match="schema tenant_sq already exists and pgfleet did not create it"
    ) as caught:
        _tenant(ports, instance, tenant_id="tenant-sq", mode="schema_per_tenant")
    assert caught.value.status == 409 and "owned by app_admin" in caught.value.message
    # Nothing was made or kept: no record, no password, no role; the schema is untouched.
    assert ports.store.get("tenant", f"{instance['id']}:tenant-sq") is None
    assert _superuser(ports, instance, "SELECT rolname FROM pg_roles WHERE rolname LIKE '%tenant_sq%'") == []
    assert _superuser(ports, instance, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'tenant_sq'",
                      "app") == [("app_admin",)]  # fmt: skip
    with _as_app(instance) as conn:
        conn.execute("DROP SCHEMA tenant_sq CASCADE")
    created = _tenant(ports, instance, tenant_id="tenant-sq", mode="schema_per_tenant")  # once it is gone
    assert created["status"] == "active"
    assert _superuser(ports, instance, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'tenant_sq'",
                      "app") == [("pgfleet_t_tenant_sq_owner",)]  # fmt: skip


def test_a_database_pgfleet_did_not_create_is_refused(ports: FakePorts, instance: dict[str, Any]) -> None:
    # The application user cannot create databases; one that could would still be refused.
    _superuser(ports, instance, "CREATE DATABASE tenant_dq OWNER app_admin")
    _superuser(ports, instance, "COMMENT ON DATABASE tenant_dq IS 'pgfleet:tenant:tenant-dq'")
    try:
        with pytest.raises(
            AlreadyExists, match="database tenant_dq already exists and pgfleet did not create it"
        ):
            _tenant(ports, instance, tenant_id="tenant-dq")
        assert (
            _superuser(ports, instance, "SELECT rolname FROM pg_roles WHERE rolname LIKE '%tenant_dq%'") == []
        )
        assert _superuser(ports, instance, "SELECT pg_get_userbyid(datdba) FROM pg_database"
                                           " WHERE datname = 'tenant_dq'") == [("app_admin",)]  # fmt: skip
    finally:
        _superuser(ports, instance, "DROP DATABASE tenant_dq")


# --- large objects --------------------------------------------------------------------------------


LO_WRITES = (
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT lo_create(0)",
    "SELECT lo_creat(-1)",
    "SELECT lo_import('/etc/hostname')",
)


def test_tenants_cannot_write_large_objects(ports: FakePorts, instance: dict[str, Any]) -> None:
    _tenant(ports, instance, tenant_id="tenant-lo", mode="schema_per_tenant", quota={"max_storage_mb": 1})
    _tenant(ports, instance, tenant_id="tenant-lodb", quota={"max_storage_mb": 20})
    for tenant in ("tenant-lo", "tenant-lodb"):
        with _as_tenant(instance, tenant) as conn:
            writer = f"pgfleet_t_{tenant.replace('-', '_')}_writer"
            # As the owner role its sessions start as, as its login, and as its writer role.
            for become in ("SELECT 1", "RESET ROLE", f"SET ROLE {writer}"):
                conn.execute(become)  # type: ignore[arg-type]
                for statement in LO_WRITES:
                    assert "permission denied" in _refused(conn, statement), (tenant, become, statement)
    # Nor through the application's large objects (not theirs to write).
    with _as_app(instance) as conn:
        own = conn.execute("SELECT lo_from_bytea(0, 'app data')").fetchone()[0]  # the application may
    with _as_tenant(instance, "tenant-lo") as conn:
        conn.execute("RESET ROLE")
        assert "permission denied" in _refused(conn, f"SELECT lo_put({own}, 0, 'tenant')")
    # So a schema's usage, which cannot count large objects, misses nothing of the tenant's.
    usage = tenants.list_tenants(ports, OPERATOR, "instance", instance["id"])["tenants"]
    assert {t["tenant_id"]: t["quota_used"]["storage_mb"] for t in usage}["tenant-lo"] < 1
    assert _superusers(ports, instance) == ["postgres"]


def test_a_suspended_application_cannot_write_large_objects(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    with _as_app(instance) as conn:
        own = conn.execute("SELECT lo_from_bytea(0, 'app data')").fetchone()[0]
    for database in ("postgres", "template1"):  # only ever in its own database
        assert _superuser(ports, instance, "SELECT has_function_privilege('public', 'lo_from_bytea(oid, bytea)', 'EXECUTE'),"
                          " has_function_privilege('app_admin', 'lo_from_bytea(oid, bytea)', 'EXECUTE')",
                          database) == [(False, False)]  # fmt: skip
    # The instance over its quota: its application role is suspended, large objects included.
    view = quotas.put(ports, OPERATOR, "instance", instance["id"], QuotaUpdate(max_storage_mb=5))
    assert view["writes_suspended"] is True
    with _as_app(instance) as conn:
        for statement in (
            *LO_WRITES,
            f"SELECT lo_put({own}, 0, 'more')",
            f"SELECT lo_truncate(lo_open({own}, 131072), 1000000)",
        ):
            assert "permission denied" in _refused(conn, statement), statement
    view = quotas.put(ports, OPERATOR, "instance", instance["id"], QuotaUpdate())
    assert view["writes_suspended"] is False
    with _as_app(instance) as conn:
        conn.execute(f"SELECT lo_put({own}, 0, 'back')")
        assert conn.execute(f"SELECT convert_from(lo_get({own}), 'UTF8')").fetchone() == ("backdata",)
        conn.execute(f"SELECT lo_unlink({own})")
    for tenant in ("tenant-lo", "tenant-lodb"):
        with _as_tenant(instance, tenant) as conn:  # restoring the application gives tenants nothing
            conn.execute("RESET ROLE")
            assert "permission denied" in _refused(conn, "SELECT lo_from_bytea(0, 'x')")
    assert _superusers(ports, instance) == ["postgres"]


# --- search_path hijacks ----------------------------------------------------------------------------

# Stand-ins for what the platform's SQL calls unqualified or compares with implicit casts: a
# session that looked into the planter's schema would pick these over pg_catalog's (exact
# argument types win over casts). (name, arguments, result, what the original computes)
FUNCTIONS = (
    ("pg_total_relation_size", "oid", "bigint", "pg_catalog.pg_total_relation_size($1)"),
    ("pg_total_relation_size", "regclass", "bigint", "pg_catalog.pg_total_relation_size($1)"),
    ("pg_database_size", "oid", "bigint", "pg_catalog.pg_database_size($1)"),
    ("pg_database_size", "name", "bigint", "pg_catalog.pg_database_size($1)"),
    ("to_regrole", "text", "regrole", "pg_catalog.to_regrole($1)"),
    ("pg_get_userbyid", "oid", "name", "pg_catalog.pg_get_userbyid($1)"),
    ("shobj_description", "oid, name", "text", "pg_catalog.shobj_description($1, $2)"),
    ("obj_description", "oid, name", "text", "pg_catalog.obj_description($1, $2)"),
    ("current_setting", "text", "text", "pg_catalog.current_setting($1)"),
    ("current_database", "", "name", "pg_catalog.current_database()"),
    ("pg_backend_pid", "", "integer", "pg_catalog.pg_backend_pid()"),
    ("pg_terminate_backend", "integer", "boolean", "false"),
    ("set_config", "text, text, boolean", "text", "pg_catalog.set_config($1, $2, $3)"),
    (
        "has_function_privilege",
        "text, text, text",
        "boolean",
        "pg_catalog.has_function_privilege($1, $2, $3)",
    ),
)
# Operators for the parameter types the platform sends (int2[]/int4[] for oid lists, text for
# names, regrole from to_regrole): (operator, left, right, what the original computes)
OPERATORS = (
    ("=", "oid", "smallint", "$1::pg_catalog.int8 OPERATOR(pg_catalog.=) $2::pg_catalog.int8"),
    ("=", "oid", "integer", "$1::pg_catalog.int8 OPERATOR(pg_catalog.=) $2::pg_catalog.int8"),
    ("=", "oid", "bigint", "$1::pg_catalog.int8 OPERATOR(pg_catalog.=) $2"),
    ("=", "oid", "regrole", "$1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid"),
    ("=", "oid", "oid", "$1 OPERATOR(pg_catalog.=) $2"),
    ("<>", "oid", "oid", "$1 OPERATOR(pg_catalog.<>) $2"),
    ("=", "name", "text", "$1::pg_catalog.text OPERATOR(pg_catalog.=) $2"),
    ("=", "name", "name", "$1 OPERATOR(pg_catalog.=) $2"),
    ("=", "text", "text", "$1 OPERATOR(pg_catalog.=) $2"),
    ("<>", "integer", "integer", "$1 OPERATOR(pg_catalog.<>) $2"),
)


def _plant(conn: psycopg.Connection, schema: str, login: str) -> None:
    """Functions and operators in `schema` that, run by anyone, record who ran them (into
    `schema`.planted, open to all), try to make `login` a superuser and to mark the `postgres`
    database (which only a superuser may do, and outlives a tenant's database)."""
    conn.execute(
        f"CREATE TABLE {schema}.planted (what text, run_by text, session_user_name text, superuser text)"
    )
    conn.execute(f"GRANT ALL ON {schema}.planted TO PUBLIC")
    conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO PUBLIC")

    def trap(name: str, args: str, result: str, original: str) -> str:
        return (
            f"CREATE FUNCTION {schema}.{name}({args}) RETURNS {result} LANGUAGE plpgsql AS $trap$ BEGIN"  # noqa: S608 (test fixtures: constant names)
            f" INSERT INTO {schema}.planted VALUES ('{name}({args})', current_user, session_user,"
            "  pg_catalog.current_setting('is_superuser'));"
            f" BEGIN EXECUTE 'ALTER ROLE {login} SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;"
            f" BEGIN EXECUTE 'COMMENT ON DATABASE postgres IS ''planted by {login} ran privileged''';"
            "  EXCEPTION WHEN OTHERS THEN NULL; END;"
            f" RETURN {original}; END $trap$"
        )

    for name, args, result, original in FUNCTIONS:
        conn.execute(trap(name, args, result, original))  # type: ignore[arg-type]
    for number, (op, left, right, original) in enumerate(OPERATORS):
        function = f"trap_op_{number}"
        conn.execute(trap(function, f"{left}, {right}", "boolean", original))  # type: ignore[arg-type]
        conn.execute(
            f"CREATE OPERATOR {schema}.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = {schema}.{function})"
        )  # type: ignore[arg-type]


def test_planted_functions_and_operators_never_run_in_the_platforms_sessions(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    _tenant(ports, instance, tenant_id="tenant-hs", mode="schema_per_tenant", quota={"max_storage_mb": 1})
    _tenant(ports, instance, tenant_id="tenant-hd", quota={"max_storage_mb": 10})
    with _as_tenant(instance, "tenant-hs") as conn:
        _plant(conn, "tenant_hs", "tenant_hs_user")
        conn.execute(
            "CREATE TABLE tenant_hs.filler AS SELECT g, md5(g::text) AS m FROM generate_series(1, 30000) g"
        )
        conn.execute(
            "CREATE FUNCTION tenant_hs.sneak() RETURNS void LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'"
        )
    with _as_tenant(instance, "tenant-hd") as conn:
        _plant(conn, "public", "tenant_hd_user")
        conn.execute("CREATE TABLE filler (g int, m text)")
    with _as_app(instance) as conn:
        _plant(conn, "public", "app_admin")
        conn.execute("CREATE TABLE public.items AS SELECT g FROM generate_series(1, 1000) g")
        # The database's owner may point every session of its database at its own schemas first.
        conn.execute("ALTER DATABASE app SET search_path = public, tenant_hs, pg_catalog")

    # Everything the platform runs inside these databases: live usage, the quotas task
    # (measuring, suspending and restoring tenants and the application), stats, deletion.
    tenants.list_tenants(ports, OPERATOR, "instance", iid)
    lines = quotas.run(ports)
    assert any("tenant tenant-hs: writes suspended" in line for line in lines), lines
    with _as_tenant(instance, "tenant-hd") as conn:
        conn.execute("INSERT INTO filler SELECT g, repeat(md5(g::text), 10) FROM generate_series(1, 30000) g")
    lines = quotas.run(ports)
    assert any("tenant tenant-hd: writes suspended" in line for line in lines), lines
    assert (
        quotas.put(ports, OPERATOR, "instance", iid, QuotaUpdate(max_storage_mb=5))["writes_suspended"]
        is True
    )
    assert quotas.put(ports, OPERATOR, "instance", iid, QuotaUpdate())["writes_suspended"] is False
    with _as_tenant(instance, "tenant-hs") as conn:
        conn.execute("DELETE FROM tenant_hs.filler")
    with _as_tenant(instance, "tenant-hd") as conn:
        conn.execute("TRUNCATE filler")
    lines = quotas.run(ports)
    assert any("tenant tenant-hs: writes restored" in line for line in lines), lines
    assert any("tenant tenant-hd: writes restored" in line for line in lines), lines
    stats = ports.engine.stats(iid, "app")
    assert stats.database_size_bytes > 0

    planted = _superuser(ports, instance, "SELECT * FROM public.planted", "app")
    planted += _superuser(ports, instance, "SELECT * FROM tenant_hs.planted", "app")
    planted += _superuser(ports, instance, "SELECT * FROM public.planted", "tenant_hd")
    ran_privileged = [row for row in planted if row[3] != "off" or row[2] == "postgres"]
    assert ran_privileged == [], ran_privileged
    # Deleting a tenant (final dump, drop) runs nothing planted either.
    tenants.delete(ports, OPERATOR, "instance", iid, "tenant-hd", backup_before_delete=True)
    ports.drain()
    assert ports.store.get("tenant", f"{iid}:tenant-hd") is None
    assert _superuser(ports, instance, "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                                       " WHERE datname = 'postgres'") == [("default administrative connection database",)]  # fmt: skip
    assert _superusers(ports, instance) == ["postgres"]
    _superuser(ports, instance, "ALTER DATABASE app RESET search_path")


# --- restores run the dump's code as its owner, never as a superuser --------------------------------

VOUCH = """
CREATE TABLE {schema}.witness (run_as text, session_user_name text, superuser text);
CREATE FUNCTION {schema}.vouch(x int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.witness VALUES (current_user, session_user, pg_catalog.current_setting('is_superuser'));
    BEGIN  -- what a function run by a `SET ROLE`d superuser session can do
        RESET ROLE;
        ALTER ROLE {login} SUPERUSER;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN x > 0;
END $$;
CREATE TABLE {schema}.orders (id int CHECK ({schema}.vouch(id)), item text);
INSERT INTO {schema}.orders VALUES (1, 'one'), (2, 'two'), (3, 'three');
"""


def test_a_tenants_logical_backup_is_restored_as_the_tenant(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    _tenant(ports, instance, tenant_id="tenant-r")
    with _as_tenant(instance, "tenant-r") as conn:
        conn.execute(VOUCH.format(schema="public", login="tenant_r_user"))  # type: ignore[arg-type]
    tenants.delete(ports, OPERATOR, "instance", iid, "tenant-r", backup_before_delete=True)
    ports.drain()
    [backup] = [
        r for (k, _), r in ports.store.records.items() if k == "backup" and r.get("tenant") == "tenant-r"
    ]
    _tenant(ports, instance, tenant_id="tenant-r")  # back, empty, with the same names

    reason = archive.logical.restore_logical_backup(ports, backup["id"])
    assert "as pgfleet_t_tenant_r_owner" in reason, reason

    # Every row went through the CHECK again, run by the tenant's owner role, never a superuser.
    with _as_tenant(instance, "tenant-r") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (3,)
        conn.execute("INSERT INTO orders VALUES (4, 'four')")
    witnessed = _superuser(ports, instance, "SELECT * FROM public.witness", "tenant_r")
    during_restore = [row for row in witnessed if str(row[1]).startswith("pgfleet_restore_")]
    assert len(during_restore) == 3, witnessed
    assert {(row[0], row[2]) for row in witnessed} == {("pgfleet_t_tenant_r_owner", "off")}, witnessed
    assert _superusers(ports, instance) == ["postgres"]
    # The database is still the platform's and the tenant's, as pgfleet made it.
    assert _superuser(ports, instance, "SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database'), datconnlimit"
                      " FROM pg_database WHERE datname = 'tenant_r'") == [("postgres", "pgfleet:tenant:tenant-r", -1)]  # fmt: skip
    assert (
        _superuser(
            ports, instance, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgfleet\\_restore\\_%%'"
        )
        == []
    )
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        _as_app(instance, "tenant_r")  # still closed to others


def test_a_tenants_schema_is_restored_as_the_tenant(
    ports: FakePorts, instance: dict[str, Any], tmp_path: Path
) -> None:
    """What SELECTIVE recovery does once the schema is dumped from its scratch server."""
    iid = instance["id"]
    _tenant(ports, instance, tenant_id="tenant-rs", mode="schema_per_tenant")
    with _as_tenant(instance, "tenant-rs") as conn:
        conn.execute(VOUCH.format(schema="tenant_rs", login="tenant_rs_user"))  # type: ignore[arg-type]
    host = ports.restore_host
    location = host.server_location(iid, instance["endpoint"]["port"])
    dump = host.dump_path(iid, "bkp-000000000042")
    host.dump_database(location, "app", dump, "a passphrase for this test only", schema="tenant_rs")
    with _as_tenant(instance, "tenant-rs") as conn:
        conn.execute("DELETE FROM orders WHERE id > 1")

    with pytest.raises(EngineError, match="holds nothing of schema nope"):
        host.restore_database(location, "app", dump, "a passphrase for this test only", schema="nope")
    assert _superuser(
        ports, instance, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'nope%%'", "app"
    ) == [(0,)]
    reason = host.restore_database(
        location,
        "app",
        dump,
        "a passphrase for this test only",
        owner="pgfleet_t_tenant_rs_owner",
        schema="tenant_rs",
    )
    assert "schema tenant_rs of app restored" in reason and "as pgfleet_t_tenant_rs_owner" in reason, reason

    with _as_tenant(instance, "tenant-rs") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (3,)
        conn.execute("INSERT INTO orders VALUES (5, 'five')")
    witnessed = _superuser(ports, instance, "SELECT * FROM tenant_rs.witness", "app")
    assert len([row for row in witnessed if str(row[1]).startswith("pgfleet_restore_")]) == 3, witnessed
    assert {(row[0], row[2]) for row in witnessed} == {("pgfleet_t_tenant_rs_owner", "off")}, witnessed
    assert _superusers(ports, instance) == ["postgres"]
    assert _superuser(
        ports,
        instance,
        "SELECT pg_get_userbyid(nspowner), obj_description(oid, 'pg_namespace')"
        " FROM pg_namespace WHERE nspname LIKE 'tenant\\_rs%%'",
        "app",
    ) == [  # fmt: skip
        ("pgfleet_t_tenant_rs_owner", "pgfleet:tenant:tenant-rs")
    ]
    with _as_app(instance) as conn:  # its privileges came back too: closed to the application
        assert "permission denied for schema tenant_rs" in _refused(conn, "SELECT * FROM tenant_rs.orders")
    # The tenant can still be deleted: its schema is recognised as the one pgfleet made.
    tenants.delete(ports, OPERATOR, "instance", iid, "tenant-rs", backup_before_delete=False)
    ports.drain()
    assert _superuser(
        ports, instance, "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_rs'", "app"
    ) == [(0,)]
