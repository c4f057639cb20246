"""Tenants, quotas, resize and pause/resume against a real PostgreSQL server.

The services run for real on top of the local engine (real PostgreSQL, real cgroups where the
host allows them); only the metadata store, queue and secrets are the in-memory fakes, and the
worker is `drain()`. One server runs for the module; the tests run in file order and build on
each other (tenants, then their quotas, then the instance's quota, resize, pause).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local import logical_dump, process
from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.cgroups import CgroupLimits
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.core import resources
from pgfleet.core.auth import Principal
from pgfleet.core.models import utcnow_iso
from pgfleet.core.paging import PageQuery
from pgfleet.domains import archive
from pgfleet.domains.instances import service as instances
from pgfleet.domains.monitoring import service as alerts
from pgfleet.domains.quotas import service as quotas
from pgfleet.domains.quotas.models import QuotaUpdate
from pgfleet.domains.reconcile import service as reconcile
from pgfleet.domains.sizing import service as sizing
from pgfleet.domains.sizing.models import ResizeRequest
from pgfleet.domains.tenants import service as tenants
from pgfleet.domains.tenants.models import TenantCreate
from tests.helpers import free_port, scratch_home
from tests.unit.fakes import FakePorts

pytestmark = pytest.mark.skipif(not local_pg.installed_binaries(), reason="no PostgreSQL binaries installed")

HOST = "127.0.0.1"
APP_PASSWORD = secrets.token_urlsafe(16)
OPERATOR = Principal(
    sub="tester", tenant_id="acme", roles=("operator",), permissions=frozenset({"postgres:*"})
)
MB = 2**20


@pytest.fixture(scope="module")
def ports() -> Iterator[FakePorts]:
    with scratch_home("pgfleet-tq-") as home:
        fake = FakePorts(home)
        fake.engine = LocalPostgresEngine(home / "data", host=HOST)  # type: ignore[assignment]
        yield fake


@pytest.fixture(scope="module")
def instance(ports: FakePorts) -> Iterator[dict[str, Any]]:
    """A running instance registered as `instances.create` would leave it (the create workflow
    itself, with its backup steps, is exercised elsewhere)."""
    iid = f"pgi-{secrets.token_hex(6)}"
    now = utcnow_iso()
    record = {
        "id": iid, "tenant_id": "acme", "name": "tq-db", "status": "running", "status_reason": "",
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
    assert not CgroupLimits().directory("memory", iid).exists()


def _connect(instance: dict[str, Any], user: str, password: str, dbname: str) -> psycopg.Connection:
    port = instance["endpoint"]["port"]
    return psycopg.connect(
        host=HOST, port=port, user=user, password=password, dbname=dbname, connect_timeout=3, autocommit=True
    )


def _refused(conn: psycopg.Connection, statement: str) -> str:
    """The error a statement gets (the test fails if it succeeds)."""
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    return str(caught.value)


def _tenant(ports: FakePorts, instance: dict[str, Any], **body: Any) -> dict[str, Any]:
    return tenants.create(ports, OPERATOR, "instance", instance["id"], TenantCreate(**body))  # type: ignore[arg-type]


CREDENTIALS: dict[str, dict[str, Any]] = {}


def test_two_tenants_each_work_in_their_own_database_only(ports: FakePorts, instance: dict[str, Any]) -> None:
    for body in (
        {"tenant_id": "tenant-a", "quota": {"max_storage_mb": 12, "max_connections": 2}},
        {"tenant_id": "tenant-b", "mode": "schema_per_tenant"},
        {"tenant_id": "tenant-c", "mode": "schema_per_tenant"},
    ):
        created = _tenant(ports, instance, **body)
        CREDENTIALS[created["tenant_id"]] = created["credentials"]
    a, b, c = (CREDENTIALS[t] for t in ("tenant-a", "tenant-b", "tenant-c"))
    with _connect(instance, a["username"], a["password"], "tenant_a") as conn:
        conn.execute("CREATE TABLE orders (id int, item text)")
        conn.execute("INSERT INTO orders VALUES (1, 'a-secret')")
        # what a tenant creates is owned by its NOLOGIN owner role, not by its login
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'orders'").fetchone()
        assert owner == ("pgfleet_t_tenant_a_owner",)
    with _connect(instance, b["username"], b["password"], "app") as conn:
        conn.execute("CREATE TABLE orders (id int, item text)")  # lands in schema tenant_b
        conn.execute("INSERT INTO orders VALUES (2, 'b-secret')")
        conn.execute("GRANT SELECT ON orders TO PUBLIC")  # even opened up, others cannot reach it
        assert "permission denied for schema public" in _refused(conn, "CREATE TABLE public.leak (x int)")
    for creds, database in ((a, "app"), (b, "tenant_a"), (c, "tenant_a"), (a, "postgres"), (b, "template1")):
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            _connect(instance, creds["username"], creds["password"], database)
    with _connect(instance, c["username"], c["password"], "app") as conn:
        assert "permission denied for schema tenant_b" in _refused(conn, "SELECT * FROM tenant_b.orders")
        assert "permission denied" in _refused(conn, "INSERT INTO tenant_b.orders VALUES (3, 'x')")
        assert "permission denied to set role" in _refused(conn, "SET ROLE pgfleet_t_tenant_b_owner")
    with _connect(instance, "app_admin", APP_PASSWORD, "app") as conn:
        assert "permission denied for schema tenant_b" in _refused(conn, "SELECT * FROM tenant_b.orders")


def test_a_connection_over_max_connections_is_refused(ports: FakePorts, instance: dict[str, Any]) -> None:
    a = CREDENTIALS["tenant-a"]
    first = _connect(instance, a["username"], a["password"], "tenant_a")
    second = _connect(instance, a["username"], a["password"], "tenant_a")
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections"):
            _connect(instance, a["username"], a["password"], "tenant_a")
        listed = tenants.list_tenants(ports, OPERATOR, "instance", instance["id"])["tenants"]
        usage = {t["tenant_id"]: t["quota_used"] for t in listed}
        assert usage["tenant-a"]["connections"] == 2 and usage["tenant-a"]["storage_mb"] > 5
        assert usage["tenant-b"]["connections"] == 0 and usage["tenant-b"]["storage_mb"] > 0
    finally:
        first.close()
        second.close()


def test_storage_quota_stops_writes_not_reads_and_deleting_rows_restores_them(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    a = CREDENTIALS["tenant-a"]
    with _connect(instance, a["username"], a["password"], "tenant_a") as conn:
        # prepared while writable: a routine that would write as the owner for any caller
        conn.execute(
            "CREATE FUNCTION sneak() RETURNS void LANGUAGE sql SECURITY DEFINER"
            " AS 'INSERT INTO orders VALUES (99, ''sneaked'')'"
        )
        conn.execute("GRANT EXECUTE ON FUNCTION sneak() TO PUBLIC")
        conn.execute("CREATE TABLE filler (id int, payload text)")
        conn.execute("INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 120000) g")  # ~8 MB
    lines = quotas.run(ports)  # what the minute schedule runs
    assert any("tenant tenant-a: writes suspended" in line for line in lines), lines
    with _connect(instance, a["username"], a["password"], "tenant_a") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)  # reads work
        assert "permission denied for table orders" in _refused(conn, "INSERT INTO orders VALUES (9, 'more')")
        assert "permission denied" in _refused(conn, "UPDATE orders SET item = 'x'")
        assert "permission denied for schema public" in _refused(conn, "CREATE TABLE escape (x int)")
        assert "permission denied to set role" in _refused(conn, "SET ROLE pgfleet_t_tenant_a_owner")
        assert "permission denied to set role" in _refused(conn, "SET ROLE pgfleet_t_tenant_a_writer")
        assert "permission denied" in _refused(conn, "SELECT lo_from_bytea(0, 'x')")
        conn.execute("SET default_transaction_read_only = off")  # changes nothing: not how writes stop
        assert "permission denied" in _refused(conn, "INSERT INTO orders VALUES (9, 'more')")
        assert "must be owner" in _refused(conn, "ALTER TABLE orders OWNER TO tenant_a_user")
        assert "permission denied for function sneak" in _refused(conn, "SELECT sneak()")
    tenant_b = CREDENTIALS["tenant-b"]
    with _connect(instance, tenant_b["username"], tenant_b["password"], "app") as conn:
        conn.execute("INSERT INTO orders VALUES (4, 'b still writes')")  # another tenant is not affected
    alert_names = {
        a.alert_name for a in alerts.list_alerts(ports, OPERATOR, query=PageQuery(page_size=100)).alerts
    }
    assert "TenantStorageQuotaExceeded:tenant-a" in alert_names
    with _connect(instance, a["username"], a["password"], "tenant_a") as conn:
        conn.execute("DELETE FROM filler")  # freeing space is allowed while suspended
    lines = quotas.run(ports)
    assert any("tenant tenant-a: writes restored" in line for line in lines), lines
    with _connect(instance, a["username"], a["password"], "tenant_a") as conn:
        conn.execute("INSERT INTO orders VALUES (10, 'back')")
        assert conn.execute("SELECT current_user").fetchone() == ("pgfleet_t_tenant_a_owner",)
        conn.execute("DROP FUNCTION sneak()")


def test_instance_quota_suspends_the_application_user_too(ports: FakePorts, instance: dict[str, Any]) -> None:
    iid = instance["id"]
    with _connect(instance, "app_admin", APP_PASSWORD, "app") as conn:
        conn.execute("CREATE TABLE items (id int)")
    view = quotas.put(ports, OPERATOR, "instance", iid, QuotaUpdate(max_storage_mb=5, max_connections=1))
    assert view["writes_suspended"] is True and view["usage"]["storage_mb"] > 5
    with _connect(instance, "app_admin", APP_PASSWORD, "app") as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (0,)
        assert "permission denied" in _refused(conn, "INSERT INTO items VALUES (1)")
        assert "permission denied" in _refused(conn, "CREATE TABLE more_items (id int)")
        conn.execute("GRANT INSERT ON items TO app_admin")  # only a warning: "no privileges were granted"
        assert "permission denied" in _refused(conn, "INSERT INTO items VALUES (1)")
        with pytest.raises(psycopg.OperationalError, match="too many connections"):
            _connect(instance, "app_admin", APP_PASSWORD, "app")
    b = CREDENTIALS["tenant-b"]
    with _connect(instance, b["username"], b["password"], "app") as conn:
        assert "permission denied" in _refused(conn, "INSERT INTO orders VALUES (5, 'server full')")
    assert "StorageQuotaExceeded" in {
        a.alert_name for a in alerts.list_alerts(ports, OPERATOR, query=PageQuery(page_size=100)).alerts
    }
    view = quotas.put(ports, OPERATOR, "instance", iid, QuotaUpdate())
    assert view["writes_suspended"] is False
    with _connect(instance, "app_admin", APP_PASSWORD, "app") as conn:
        conn.execute("INSERT INTO items VALUES (1)")
        conn.execute("CREATE TABLE more_items (id int)")
        assert conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'"
        ).fetchone() == ("app_admin",)
    with _connect(instance, b["username"], b["password"], "app") as conn:
        conn.execute("INSERT INTO orders VALUES (5, 'room again')")


def test_deleting_a_tenant_leaves_a_backup_of_exactly_its_data(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    view = tenants.delete(ports, OPERATOR, "instance", instance["id"], "tenant-b", backup_before_delete=True)
    assert view["status"] == "deleting"
    b = CREDENTIALS["tenant-b"]
    session = _connect(instance, b["username"], b["password"], "app")  # ended by the deletion
    ports.drain()
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    [backup] = [
        r for (k, _), r in ports.store.records.items() if k == "backup" and r.get("tenant") == "tenant-b"
    ]
    assert backup["parent_id"] == instance["id"] and backup["logical"] and backup["status"] == "completed"
    dump = Path(backup["dump_path"])
    assert dump.is_file() and dump.stat().st_size == backup["size_bytes"] > 0
    # Encrypted on disk with the instance's repository passphrase: no plaintext of the tenant's.
    assert backup["encrypted"] is True
    assert b"PGDMP" not in dump.read_bytes() and b"orders" not in dump.read_bytes()
    plain = process.make_owned_dir(dump.parent.parent / "plain") / "tenant-b.dump"
    logical_dump.decrypt(dump, plain, archive.service.cipher_passphrase(ports.secrets, instance["id"]))
    bin_dir = local_pg.bin_dir_for("15")
    listing = subprocess.run(
        [str(bin_dir / "pg_restore"), "-l", str(plain)], capture_output=True, text=True, check=True
    )
    assert "TABLE DATA tenant_b orders" in listing.stdout
    assert (
        "tenant_a" not in listing.stdout
        and "tenant_c" not in listing.stdout
        and " items " not in listing.stdout
    )
    with pytest.raises(psycopg.OperationalError):
        _connect(instance, b["username"], b["password"], "app")
    with _connect(instance, "app_admin", APP_PASSWORD, "app") as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_b'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE '%%tenant_b%%'").fetchone() == (
            0,
        )
    assert [
        t["tenant_id"] for t in tenants.list_tenants(ports, OPERATOR, "instance", instance["id"])["tenants"]
    ] == [
        "tenant-a",
        "tenant-c",
    ]


def test_resize_changes_shared_buffers_and_the_cgroup_limit(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    record = sizing.resize(ports, OPERATOR, "instance", iid, ResizeRequest(cpu=2, memory=1024))
    assert record["status"] == "resizing"
    ports.drain()
    record = ports.store.get("instance", iid)
    assert record["status"] == "running", record["status_reason"]
    with _connect(instance, "app_admin", APP_PASSWORD, "app") as conn:
        assert conn.execute("SHOW shared_buffers").fetchone() == ("256MB",)
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (1,)
    limits = CgroupLimits()
    if limits.unavailable_reason() is not None:
        assert "settings only" in record["status_reason"]
        return
    assert "enforced by cgroup v1" in record["status_reason"]
    assert limits.memory_limit_bytes(iid) == 1024 * MB
    cpu_dir = limits.directory("cpu", iid)
    assert (cpu_dir / "cpu.cfs_quota_us").read_text().strip() == "200000"
    postmaster = int((Path(ports.engine.paths(iid).pidfile)).read_text().splitlines()[0])  # type: ignore[attr-defined]
    assert postmaster in limits.pids("memory", iid) and postmaster in limits.pids("cpu", iid)


def test_pause_refuses_connections_and_resume_brings_the_data_back(
    ports: FakePorts, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    resources.transition(ports, OPERATOR, instances.INSTANCE, iid, "pause")
    ports.drain()
    assert ports.store.get("instance", iid)["status"] == "paused"
    with pytest.raises(psycopg.OperationalError):
        _connect(instance, "app_admin", APP_PASSWORD, "app")
    assert not CgroupLimits().directory("memory", iid).exists()  # its cgroup is released
    reconcile.run(ports)
    quotas.run(ports)
    assert not ports.engine.state(iid).running  # nobody restarts a paused instance
    resources.transition(ports, OPERATOR, instances.INSTANCE, iid, "resume")
    ports.drain()
    assert ports.store.get("instance", iid)["status"] == "running"
    with _connect(instance, "app_admin", APP_PASSWORD, "app") as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (1,)
    a = CREDENTIALS["tenant-a"]
    with _connect(instance, a["username"], a["password"], "tenant_a") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
