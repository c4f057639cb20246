"""Tenants through the api handler, with fake ports below the domains."""

from __future__ import annotations

import pytest

from pgfleet.ports.database_admin import TenantUsage

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"


@pytest.fixture
def instance(call, fake_ports) -> dict:
    status, body = call("POST", SINGLE, {"name": "orders-db"})
    assert status == 202, body
    fake_ports.drain()
    return body


def _tenants(instance: dict) -> str:
    return f"{SINGLE}/{instance['id']}/tenants"


def test_create_shows_credentials_once_and_lists_live_usage(call, fake_ports, instance):
    status, body = call(
        "POST", _tenants(instance),
        {"tenant_id": "tenant-abc", "quota": {"max_storage_mb": 100, "max_connections": 5}},
    )  # fmt: skip
    assert status == 201, body
    assert body["database_name"] == "tenant_abc" and body["user"] == "tenant_abc_user"
    assert body["status"] == "active" and body["mode"] == "database_per_tenant"
    password = body["credentials"]["password"]
    assert len(password) >= 24 and body["credentials"]["uri"].endswith("/tenant_abc")
    admin = fake_ports.engine.admins[instance["id"]]
    assert admin.tenants["tenant-abc"]["password"] == password
    assert admin.tenants["tenant-abc"]["spec"].max_connections == 5
    admin.usage["tenant-abc"] = TenantUsage(storage_bytes=256 * 2**20, connections=12)
    status, listing = call("GET", _tenants(instance))
    assert status == 200
    [tenant] = listing["tenants"]
    assert tenant["quota_used"] == {"storage_mb": 256.0, "connections": 12}
    assert {"tenant_id", "database_name", "user", "created_at", "quota_used"} <= set(tenant)
    assert "credentials" not in tenant and password not in str(listing)


def test_a_given_password_and_user_are_used_schema_mode(call, fake_ports, instance):
    status, body = call(
        "POST", _tenants(instance),
        {"tenant_id": "beta", "mode": "schema_per_tenant", "initial_user": "beta_app",
         "initial_password": "correct horse battery staple"},
    )  # fmt: skip
    assert status == 201, body
    assert body["database_name"] == "app" and body["schema_name"] == "beta" and body["user"] == "beta_app"
    assert body["credentials"]["password"] == "correct horse battery staple"
    spec = fake_ports.engine.admins[instance["id"]].tenants["beta"]["spec"]
    assert (spec.schema, spec.login, spec.owner) == ("beta", "beta_app", "pgfleet_t_beta_owner")


@pytest.mark.parametrize(
    "body",
    [
        {"tenant_id": "x'; DROP DATABASE app; --"},
        {"tenant_id": 'a"b'},
        {"tenant_id": "Tenant"},
        {"tenant_id": "-abc"},
        {"tenant_id": "a--b"},
        {"tenant_id": "abc-"},
        {"tenant_id": "a b"},
        {"tenant_id": "t" * 41},
        {"tenant_id": "postgres"},
        {"tenant_id": "public"},
        {"tenant_id": "pg-catalog"},
        {"tenant_id": "pgfleet_t_x"},
        {"tenant_id": "ok-tenant", "initial_user": "postgres"},
        {"tenant_id": "ok-tenant", "initial_user": "pgfleet_x"},
        {"tenant_id": "ok-tenant", "initial_user": "a;b"},
        {"tenant_id": "ok-tenant", "mode": "cluster_per_tenant"},
        {"tenant_id": "ok-tenant", "initial_password": "short"},
        {"tenant_id": "ok-tenant", "quota": {"max_connections": 0}},
        {"tenant_id": "ok-tenant", "quota": {"max_storage_mb": -1}},
        {"tenant_id": "ok-tenant", "owner": "me"},
    ],
)
def test_hostile_or_invalid_bodies_are_422_and_change_nothing(call, fake_ports, instance, body):
    before = dict(fake_ports.store.records)
    status, answer = call("POST", _tenants(instance), body)
    assert status == 422, answer
    assert answer["error"]["code"] == "validation_error"
    assert fake_ports.store.records == before
    assert (
        fake_ports.engine.admins.get(instance["id"]) is None
        or not fake_ports.engine.admins[instance["id"]].tenants
    )


def test_a_submitted_password_never_comes_back_in_a_validation_error(call, instance):
    status, answer = call(
        "POST", _tenants(instance), {"tenant_id": "Bad", "initial_password": "s3cret-passw0rd!"}
    )
    assert status == 422 and "s3cret-passw0rd!" not in str(answer)


def test_conflicts_are_409(call, fake_ports, instance):
    assert call("POST", _tenants(instance), {"tenant_id": "tenant-a"})[0] == 201
    status, body = call("POST", _tenants(instance), {"tenant_id": "tenant-a"})
    assert status == 409 and body["error"]["code"] == "already_exists"
    assert call("POST", _tenants(instance), {"tenant_id": "tenant_a"})[0] == 409  # same database name
    assert call("POST", _tenants(instance), {"tenant_id": "other", "initial_user": "tenant_a_user"})[0] == 409
    assert call("POST", _tenants(instance), {"tenant_id": "other", "initial_user": "app_admin"})[0] == 409
    assert call("POST", _tenants(instance), {"tenant_id": "app"})[0] == 409  # the instance's own database
    assert call("POST", f"{SINGLE}/{instance['id']}/stop")[0] == 202
    fake_ports.drain()
    status, body = call("POST", _tenants(instance), {"tenant_id": "late"})
    assert status == 409 and body["error"]["code"] == "invalid_state"


def test_engine_refusal_leaves_nothing_registered(call, fake_ports, instance):
    from pgfleet.ports.database_admin import TenantSpec

    admin = fake_ports.engine.database_admin(instance["id"])
    admin.create_tenant(  # a role of that name exists on the server, made by someone else
        TenantSpec("outsider", "database_per_tenant", "x", None, "taken_user", "o", "w", "r"), "pw"
    )
    status, body = call("POST", _tenants(instance), {"tenant_id": "newbie", "initial_user": "taken_user"})
    assert status == 409, body
    assert not any(k == "tenant" for k, _ in fake_ports.store.records)
    assert not any(k.startswith("tenant-") for k in fake_ports.store.claims)
    assert call("POST", _tenants(instance), {"tenant_id": "newbie"})[0] == 201


def test_rbac_and_tenant_scoping(call, fake_ports, instance):
    assert call("POST", _tenants(instance), {"tenant_id": "tenant-a"}, role="viewer")[0] == 403
    assert call("POST", _tenants(instance), {"tenant_id": "tenant-a"})[0] == 201
    assert call("GET", _tenants(instance), role="viewer")[0] == 200
    assert call("DELETE", f"{_tenants(instance)}/tenant-a", role="viewer")[0] == 403
    for method, path, body in (
        ("GET", _tenants(instance), None),
        ("POST", _tenants(instance), {"tenant_id": "intruder"}),
        ("DELETE", f"{_tenants(instance)}/tenant-a", None),
    ):
        status, answer = call(method, path, body, tenant="globex")
        assert status == 404 and answer["error"]["code"] == "not_found", (method, path)
    assert call("GET", _tenants(instance), role="admin", tenant=None)[0] == 200
    assert call("DELETE", f"{_tenants(instance)}/nobody")[0] == 404
    assert call("DELETE", f"{_tenants(instance)}/BAD'ID")[0] in (404, 422)


def test_delete_takes_a_logical_backup_then_drops(call, fake_ports, instance):
    assert call("POST", _tenants(instance), {"tenant_id": "tenant-a"})[0] == 201
    status, body = call("DELETE", f"{_tenants(instance)}/tenant-a")
    assert status == 202 and body["status"] == "deleting" and body["operation_id"]
    assert call("DELETE", f"{_tenants(instance)}/tenant-a")[0] == 409  # already being deleted
    assert call("POST", f"{SINGLE}/{instance['id']}/pause")[0] == 409  # its drop needs the server
    fake_ports.drain()
    _, op = call("GET", f"/api/v1/operations/{body['operation_id']}")
    assert op["status"] == "succeeded", op
    assert [s["name"] for s in op["steps"]] == ["block_logins", "backup", "drop", "remove_record"]
    assert call("GET", _tenants(instance))[1] == {"tenants": []}
    assert "tenant-a" not in fake_ports.engine.admins[instance["id"]].tenants
    backups = [r for (k, _), r in fake_ports.store.records.items() if k == "backup" and r.get("logical")]
    [backup] = backups
    assert backup["parent_id"] == instance["id"] and backup["status"] == "completed"
    assert backup["tenant"] == "tenant-a" and backup["dump_path"].endswith(".dump")
    # Encrypted like the repository, with the instance stanza's passphrase (restores decrypt it).
    assert backup["owner"] == "pgfleet_t_tenant_a_owner" and backup["encrypted"] is True
    assert backup["size_bytes"] > 0 and backup["finished_at"] and backup["tenant_id"] == "acme"
    assert not any(name.startswith("tenants/") for name in fake_ports.secrets.values)
    # the name is free again
    assert call("POST", _tenants(instance), {"tenant_id": "tenant-a"})[0] == 201


def test_delete_without_backup(call, fake_ports, instance):
    assert call("POST", _tenants(instance), {"tenant_id": "tenant-a"})[0] == 201
    status, _ = call("DELETE", f"{_tenants(instance)}/tenant-a?backup_before_delete=false")
    assert status == 202
    fake_ports.drain()
    assert not [r for (k, _), r in fake_ports.store.records.items() if k == "backup" and r.get("logical")]


def test_idempotency_key_replays_the_same_tenant(call, fake_ports, instance):
    h = {"Idempotency-Key": "tenant-create-1"}
    s1, first = call("POST", _tenants(instance), {"tenant_id": "tenant-a"}, headers=h)
    s2, second = call("POST", _tenants(instance), {"tenant_id": "tenant-a"}, headers=h)
    assert s1 == 201 and s2 == 201
    assert first["credentials"]["password"] == second["credentials"]["password"]
    assert call("POST", _tenants(instance), {"tenant_id": "tenant-b"}, headers=h)[0] == 422


def test_cluster_tenants_run_on_the_cluster(call, fake_ports):
    status, cluster = call("POST", CLUSTERS, {"name": "ha-db"})
    fake_ports.drain()
    path = f"{CLUSTERS}/{cluster['id']}/tenants"
    status, body = call("POST", path, {"tenant_id": "tenant-abc"})
    assert status == 201, body
    assert (
        body["credentials"]["uri"].count(",") == 2
        and "target_session_attrs=read-write" in body["credentials"]["uri"]
    )
    assert "tenant-abc" in fake_ports.cluster_engine.admins[cluster["id"]].tenants
    assert [t["tenant_id"] for t in call("GET", path)[1]["tenants"]] == ["tenant-abc"]
    assert call("DELETE", f"{path}/tenant-abc")[0] == 202
    fake_ports.drain()
    assert call("GET", path)[1] == {"tenants": []}
