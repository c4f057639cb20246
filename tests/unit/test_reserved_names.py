"""Names the platform itself uses on a server are refused at the API with 422, before anything
is created: a customer who picked `rewinder` would otherwise take over Patroni's pg_rewind
role, and `postgres` as a database would hand it the maintenance database."""

from __future__ import annotations

import pytest

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"

# Every role the platform creates or relies on (the superuser; Patroni's replication, rewind
# and REST API users; pgfleet's own tenant, frozen-owner and restore roles) and PostgreSQL's
# reserved names.
PLATFORM_ROLES = [
    "postgres", "replicator", "rewinder", "rewind_user", "pgbackrest", "pgfleet", "public", "none",
    "current_user", "session_user", "pg_monitor", "pg_read_server_files", "pgfleet_t_acme_owner",
    "pgfleet_frozen_0123456789abcdef", "pgfleet_restore_0123456789abcdef",
]  # fmt: skip
SYSTEM_DATABASES = ["postgres", "template0", "template1"]


def _refused(call, path: str, body: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    status, answer = call("POST", path, body)
    assert status == 422, (body, answer)
    assert answer["error"]["code"] == "validation_error"
    assert "reserved" in str(answer["error"]["details"]), answer
    assert field in str(answer["error"]["details"]), answer


@pytest.mark.parametrize("path", [SINGLE, CLUSTERS])
@pytest.mark.parametrize("username", PLATFORM_ROLES)
def test_a_platform_role_is_not_an_application_user(call, fake_ports, path, username):
    _refused(call, path, {"name": "orders-db", "username": username}, "username")
    assert not fake_ports.store.records  # nothing was registered, nothing provisioned


@pytest.mark.parametrize("path", [SINGLE, CLUSTERS])
@pytest.mark.parametrize("database", SYSTEM_DATABASES)
def test_a_system_database_is_not_an_application_database(call, fake_ports, path, database):
    _refused(call, path, {"name": "orders-db", "database": database}, "database")
    assert not fake_ports.store.records


def test_ordinary_names_still_work(call, fake_ports):
    status, body = call("POST", SINGLE, {"name": "orders-db", "username": "rewind", "database": "postgresql"})
    assert status == 202, body
    assert (body["username"], body["database"]) == ("rewind", "postgresql")


@pytest.fixture
def instance(call, fake_ports) -> dict:
    status, body = call("POST", SINGLE, {"name": "orders-db"})
    assert status == 202, body
    fake_ports.drain()
    return body


@pytest.mark.parametrize("username", PLATFORM_ROLES)
def test_a_platform_role_is_not_a_tenant_user(call, fake_ports, instance, username):
    path = f"{SINGLE}/{instance['id']}/tenants"
    _refused(call, path, {"tenant_id": "tenant-a", "initial_user": username}, "initial_user")
    assert (
        fake_ports.engine.admins.get(instance["id"]) is None
        or not fake_ports.engine.admins[instance["id"]].tenants
    )
    assert call("GET", path)[1]["tenants"] == []


@pytest.mark.parametrize("tenant_id", [*SYSTEM_DATABASES, "pg-stat", "pgfleet-t-x"])
def test_a_system_database_is_not_a_tenant_database(call, fake_ports, instance, tenant_id):
    path = f"{SINGLE}/{instance['id']}/tenants"
    _refused(call, path, {"tenant_id": tenant_id}, "tenant_id")
    assert call("GET", path)[1]["tenants"] == []


@pytest.mark.parametrize("tenant_id", ["pg", "pgfleet"])
def test_a_tenant_id_whose_default_user_is_reserved_needs_another_user(call, fake_ports, instance, tenant_id):
    path = f"{SINGLE}/{instance['id']}/tenants"
    status, answer = call("POST", path, {"tenant_id": tenant_id})
    assert status == 422 and f"{tenant_id}_user" in str(answer["error"]), answer
    assert call("GET", path)[1]["tenants"] == []
    status, body = call("POST", path, {"tenant_id": tenant_id, "initial_user": f"app_{tenant_id}"})
    assert status == 201, body
