"""The Terraform provider's schema is generated from the API's pydantic models, and the
committed `terraform-provider-schema/` is what the generator writes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field
from tf.iface import CreateContext, DeleteContext, ImportContext, PlanContext, ReadContext, UpdateContext
from tf.types import Unknown
from tf.utils import Diagnostics

from pgfleet.core.models import StrictModel
from pgfleet.domains.instances.models import InstanceCreate
from pgfleet.provider import SOURCE_ADDRESS
from pgfleet.provider.catalog import BACKUP_SCHEDULE, CLUSTER, INSTANCE, QUOTA, READ_REPLICA, TENANT
from pgfleet.provider.client import ApiError, OperationFailed
from pgfleet.provider.diagnostics import add_api_error
from pgfleet.provider.generate import DEFAULT_OUT, schema_document, stale
from pgfleet.provider.install import install, target_platform
from pgfleet.provider.resources import check_arguments, resource_class, to_state
from pgfleet.provider.schema import NestedAttribute, resource_schema
from pgfleet.provider.spec import Computed, InPlaceUpdate, ResourceSpec

TF_TYPES = {int: "number", str: "string"}


def _attributes(spec: ResourceSpec) -> dict:
    return {a.name: a for a in resource_schema(spec).attributes}


def test_committed_files_are_what_the_generator_writes() -> None:
    assert stale(DEFAULT_OUT) == [], "run: python -m pgfleet.provider.generate"


def test_instance_arguments_come_from_the_create_model() -> None:
    attributes = _attributes(INSTANCE)
    for name, field in InstanceCreate.model_fields.items():
        attribute = attributes[name]
        assert json.loads(attribute.type.tf_type()) == TF_TYPES[field.annotation]
        assert attribute.description.startswith(field.description)
        assert attribute.required == field.is_required()
        assert attribute.optional == (not field.is_required())
        if not field.is_required():
            assert attribute.default == field.default
    assert "Between 256 and 262144" in attributes["memory"].description
    assert attributes["name"].required and attributes["name"].requires_replace
    # A higher version is an upgrade: an update in place, never a replace.
    assert {n for n, a in attributes.items() if a.requires_replace} == {"name", "database", "username"}
    assert not attributes["version"].requires_replace and attributes["upgrade_mode"].default == "in_place"


def test_instance_computed_attributes_and_their_sensitivity() -> None:
    schema = schema_document()["provider_schemas"][SOURCE_ADDRESS]
    resource = schema["resource_schemas"]["pgfleet_instance"]["block"]["attributes"]
    computed = {n for n, a in resource.items() if a.get("computed") and not a.get("optional")}
    assert computed == {"id", "status", "host", "port", "password", "uri", "pooler_host", "pooler_port"}
    assert {n for n, a in resource.items() if a.get("sensitive")} == {"password", "uri"}
    assert (
        resource["port"]["type"] == "number" and resource["host"]["description"] == "Host clients connect to."
    )
    data = schema["data_source_schemas"]["pgfleet_instance"]["block"]["attributes"]
    assert data["id"]["required"] and "password" not in data and "uri" not in data
    assert schema["provider"]["block"]["attributes"]["token"]["sensitive"]


def _flags(attribute: Any) -> set[str]:
    return {
        f
        for f in ("required", "optional", "computed", "sensitive", "requires_replace")
        if getattr(attribute, f)
    }


def test_a_cluster_is_an_instance_with_nodes_and_replication() -> None:
    attributes = _attributes(CLUSTER)
    assert {n for n, a in attributes.items() if a.requires_replace} == {
        "name", "database", "username", "replication_mode",
    }  # fmt: skip
    assert not attributes["node_count"].requires_replace and attributes["node_count"].default == 3
    assert {n for n, a in attributes.items() if a.sensitive} == {"password", "uri", "read_only_uri"}
    nodes = attributes["nodes"]
    assert isinstance(nodes, NestedAttribute) and nodes.nesting == "list" and _flags(nodes) == {"computed"}
    assert {a.name: json.loads(a.type.tf_type()) for a in nodes.attributes} == {
        "id": "string", "role": "string", "host": "string", "port": "number",
    }  # fmt: skip
    assert all(_flags(a) == {"computed"} for a in nodes.attributes)
    served = schema_document()["provider_schemas"][SOURCE_ADDRESS]
    assert (
        served["resource_schemas"]["pgfleet_cluster"]["block"]["attributes"]["nodes"]["nested_type"][
            "nesting_mode"
        ]
        == "list"
    )
    assert "read_only_uri" not in served["data_source_schemas"]["pgfleet_cluster"]["block"]["attributes"]


def test_a_tenant_belongs_to_an_instance_or_a_cluster_and_has_a_nested_quota() -> None:
    attributes = _attributes(TENANT)
    assert (
        _flags(attributes["instance_id"])
        == _flags(attributes["cluster_id"])
        == {"optional", "requires_replace"}
    )
    # The API picks a user and a password when absent: planned as known after apply.
    assert _flags(attributes["initial_password"]) == {"optional", "computed", "sensitive", "requires_replace"}
    assert attributes["initial_user"].default is Unknown
    quota = attributes["quota"]
    assert isinstance(quota, NestedAttribute) and quota.nesting == "single"
    assert quota.default == {"max_storage_mb": None, "max_connections": None}
    # Nullable limits: not computed, so that removing one sets it back to unlimited.
    assert {a.name: _flags(a) for a in quota.attributes} == {
        "max_storage_mb": {"optional"}, "max_connections": {"optional"},
    }  # fmt: skip


def test_nested_defaults_are_planned_where_the_configuration_leaves_them_null() -> None:
    attributes = _attributes(QUOTA)
    assert _flags(attributes["max_storage_mb"]) == {"optional"}  # null is unlimited, a real value
    thresholds = attributes["alert_thresholds"]
    assert thresholds.type.decode({"storage_percent": 70, "connections_percent": None}) == {
        "storage_percent": 70, "connections_percent": 90,
    }  # fmt: skip
    assert thresholds.type.encode({"storage_percent": 70, "connections_percent": 90, "extra": 1}) == {
        "storage_percent": 70, "connections_percent": 90,
    }  # fmt: skip


class WidgetCreate(StrictModel):
    name: str = Field(description="What to call it.", examples=["w1"])
    size: int = Field(default=3, ge=1, le=9, description="How big.")
    tags: list[str] = Field(default_factory=list, description="Labels.")


class Widget(BaseModel):
    id: str
    state: str = Field(description="Where it is.")


def _widget(**changes: object) -> ResourceSpec:
    fields: dict = {
        "name": "widget",
        "path": "/api/v1/postgres/cluster/{cluster_id}/widgets",
        "create": WidgetCreate,
        "response": Widget,
        "description": "A widget.",
        "computed": (Computed("state"),),
        "in_place": (InPlaceUpdate("resize", ("size", "tags")),),
        "force_new": ("name",),
        "parents": {"cluster_id": "The cluster."},
    }
    return ResourceSpec(**{**fields, **changes})


def test_any_model_becomes_a_schema_by_declaration() -> None:
    attributes = _attributes(_widget())
    assert attributes["size"].description == "How big. Between 1 and 9. Defaults to `3`."
    assert attributes["size"].optional and attributes["size"].computed and attributes["size"].default == 3
    assert json.loads(attributes["tags"].type.tf_type()) == ["list", "string"]
    assert attributes["tags"].default is Unknown  # a factory default is left to the API
    assert attributes["state"].computed and attributes["state"].description == "Where it is."
    assert attributes["cluster_id"].required and attributes["cluster_id"].requires_replace


def test_a_nested_resource_is_addressed_and_imported_through_its_parent() -> None:
    spec = _widget()
    state = {"cluster_id": "pgc-1", "id": "w-2"}
    assert spec.item_path(state) == "/api/v1/postgres/cluster/pgc-1/widgets/w-2"
    assert spec.import_candidates("pgc-1/w-2") == [state]
    with pytest.raises(ValueError, match="<cluster_id>/<id>"):
        spec.import_candidates("w-2")


def test_every_argument_must_say_how_it_changes() -> None:
    with pytest.raises(ValueError, match="tags"):
        _widget(in_place=(InPlaceUpdate("resize", ("size",)),))
    with pytest.raises(ValueError, match="declared twice"):
        _widget(force_new=("name", "size"))


def _errors(diags: Diagnostics) -> list[tuple[list, str]]:
    return [(d.path, d.summary) for d in diags.diagnostics]


def test_plan_time_validation_uses_the_api_model_and_names_the_attribute() -> None:
    diags = Diagnostics()
    check_arguments(
        diags, InstanceCreate, {"name": Unknown, "memory": 1, "username": "postgres", "cpu": None}
    )
    assert _errors(diags) == [
        (["memory"], "Invalid value for memory"),
        (["username"], "Invalid value for username"),
    ]
    assert "greater than or equal to 256" in diags.diagnostics[0].detail
    clean = Diagnostics()
    check_arguments(clean, InstanceCreate, {"name": "orders-db", "memory": 2048})
    assert not clean.diagnostics


def test_api_validation_errors_land_on_their_attribute() -> None:
    listed = ApiError(
        "POST", "/x", 422, "validation_error", "the request is not valid",
        [{"field": "memory", "message": "Input should be greater than or equal to 256", "type": "x"}],
    )  # fmt: skip
    service = ApiError(
        "POST", "/x", 422, "validation_error", "PostgreSQL 99 is not available",
        {"field": "version", "supported": ["15"]}, "req-1",
    )  # fmt: skip
    other = ApiError("POST", "/x", 409, "already_exists", "instance already exists", None, "req-2")
    diags = Diagnostics()
    for exc in (listed, service, other):
        add_api_error(diags, "Could not create pgfleet_instance", exc, INSTANCE.arguments)
    assert _errors(diags) == [
        (["memory"], "Invalid value for memory"),
        (["version"], "Invalid value for version"),
        (None, "Could not create pgfleet_instance"),
    ]
    assert diags.diagnostics[1].detail == "PostgreSQL 99 is not available (supported: 15)"
    assert "HTTP 409 already_exists, request req-2" in diags.diagnostics[2].detail


def test_install_writes_a_mirror_and_a_cli_config(tmp_path: Path) -> None:
    done = install(tmp_path, target=Path("/opt/venv/bin/terraform-provider-pgfleet"))
    relative = done.executable.relative_to(tmp_path / "terraform" / "mirror")
    assert relative.parts == (
        "registry.terraform.io", "pgfleet", "pgfleet", "0.1.0", target_platform(), "terraform-provider-pgfleet_v0.1.0"
    )  # fmt: skip
    assert done.executable.stat().st_mode & 0o111
    assert 'exec /opt/venv/bin/terraform-provider-pgfleet "$@"' in done.executable.read_text()
    config = done.cli_config.read_text()
    assert f'path    = "{tmp_path / "terraform" / "mirror"}"' in config
    assert 'include = ["registry.terraform.io/pgfleet/*"]' in config
    assert 'exclude = ["registry.terraform.io/pgfleet/*"]' in config


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH")
def test_examples_are_formatted_as_terraform_fmt_writes_them() -> None:
    proc = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(DEFAULT_OUT / "examples")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout


# --- the generic lifecycle, against a scripted API (no processes) ------------------------


class ScriptedApi:
    """Answers each (method, path) with the next scripted response; records every call."""

    def __init__(self, script: dict[tuple[str, str], list[Any]]) -> None:
        self.script = script
        self.calls: list[tuple[str, str, Any]] = []

    def api_client(self, diags: Diagnostics) -> ScriptedApi:
        return self

    def request(self, method: str, path: str, body: Any = None, idempotency_key: str | None = None) -> Any:
        self.calls.append((method, path, body))
        answer = self.script[(method, path)].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def create(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body, idempotency_key="key")

    def wait_operation(self, operation_id: str, timeout: float) -> dict[str, Any]:
        operation = self.request("GET", f"/api/v1/operations/{operation_id}")
        if operation["status"] == "failed":
            raise OperationFailed(operation)
        return dict(operation)


ITEM = "/api/v1/postgres/single/pgi-1"


def _instance(**changes: Any) -> dict[str, Any]:
    body = {
        "id": "pgi-1", "name": "orders-db", "status": "running", "version": "15", "cpu": 1,
        "memory": 1024, "storage": 10, "database": "app", "username": "app_admin",
        "endpoint": {"host": "127.0.0.1", "port": 15432}, "operation_id": "op-1",
    }  # fmt: skip
    return {**body, **changes}


def _not_found() -> ApiError:
    return ApiError("GET", ITEM, 404, "not_found", "instance pgi-1 not found")


def _resource(api: ScriptedApi, spec: ResourceSpec = INSTANCE) -> Any:
    return resource_class(spec)(api)


def _state(**changes: Any) -> dict[str, Any]:
    return {**to_state(INSTANCE, _instance(), {"password": "pw", "uri": "postgresql://..."}), **changes}


def test_create_waits_for_its_operation_and_keeps_the_password() -> None:
    created = _instance(status="creating", credentials={"password": "pw", "uri": "postgresql://x"})
    api = ScriptedApi(
        {
            ("POST", "/api/v1/postgres/single"): [created],
            ("GET", "/api/v1/operations/op-1"): [{"id": "op-1", "status": "succeeded"}],
            ("GET", ITEM): [_instance()],
        }
    )
    diags = Diagnostics()
    planned = {
        **{a.name: Unknown for a in resource_schema(INSTANCE).attributes},
        "name": "orders-db",
        "cpu": 1,
    }
    state = _resource(api).create(CreateContext(diags, "pgfleet_instance"), planned)
    assert not diags.diagnostics
    assert api.calls[0] == ("POST", "/api/v1/postgres/single", {"name": "orders-db", "cpu": 1})
    assert (state["status"], state["password"], state["port"]) == ("running", "pw", 15432)


def test_a_failed_create_stays_in_state_with_the_operations_error() -> None:
    failed = {"id": "op-1", "status": "failed", "error": "provision: disk full", "steps": [{"name": "provision", "status": "failed"}]}  # fmt: skip
    api = ScriptedApi(
        {
            ("POST", "/api/v1/postgres/single"): [_instance(status="creating")],
            ("GET", "/api/v1/operations/op-1"): [failed],
            ("GET", ITEM): [_instance(status="failed")],
        }
    )
    diags = Diagnostics()
    state = _resource(api).create(CreateContext(diags, "pgfleet_instance"), {"name": "orders-db"})
    assert state["id"] == "pgi-1" and state["status"] == "failed"  # Terraform taints it
    assert "failed at step provision: provision: disk full" in diags.diagnostics[0].detail


def test_cpu_memory_storage_change_in_place_through_resize() -> None:
    resize = f"{ITEM}/resize"
    api = ScriptedApi(
        {
            ("POST", resize): [_instance(status="resizing", operation_id="op-2")],
            ("GET", "/api/v1/operations/op-2"): [{"id": "op-2", "status": "succeeded"}],
            ("GET", ITEM): [_instance(memory=2048)],
        }
    )
    diags = Diagnostics()
    state = _resource(api).update(UpdateContext(diags, "pgfleet_instance"), _state(), _state(memory=2048))
    assert not diags.diagnostics
    assert api.calls[0] == ("POST", resize, {"cpu": 1, "memory": 2048, "storage": 10})
    assert state["memory"] == 2048 and state["password"] == "pw"


def test_read_of_a_deleted_instance_removes_it_from_state() -> None:
    api = ScriptedApi({("GET", ITEM): [_not_found()]})
    assert _resource(api).read(ReadContext(Diagnostics(), "pgfleet_instance"), _state()) is None


def test_delete_of_a_busy_instance_waits_for_its_work_then_deletes() -> None:
    busy = ApiError("DELETE", ITEM, 409, "invalid_state", "cannot delete an instance that is creating")
    api = ScriptedApi(
        {
            ("DELETE", ITEM): [busy, _instance(status="deleting", operation_id="op-3")],
            ("GET", ITEM): [_instance(status="creating", operation_id="op-1")],
            ("GET", "/api/v1/operations/op-1"): [{"id": "op-1", "status": "succeeded"}],
            ("GET", "/api/v1/operations/op-3"): [{"id": "op-3", "status": "succeeded"}],
        }
    )
    diags = Diagnostics()
    assert _resource(api).delete(DeleteContext(diags, "pgfleet_instance"), _state()) is None
    assert not diags.diagnostics and [c[0] for c in api.calls].count("DELETE") == 2


def test_delete_of_an_instance_already_gone_succeeds() -> None:
    api = ScriptedApi({("DELETE", ITEM): [_not_found()]})
    assert _resource(api).delete(DeleteContext(Diagnostics(), "pgfleet_instance"), _state()) is None


def _succeeded(operation_id: str) -> list[dict[str, str]]:
    return [{"id": operation_id, "status": "succeeded"}]


def test_a_tenant_needs_exactly_one_parent() -> None:
    resource = _resource(ScriptedApi({}), TENANT)
    for parents, valid in (
        ({"instance_id": "pgi-1"}, True),
        ({"cluster_id": Unknown}, True),  # another resource's id, known at apply
        ({}, False),
        ({"instance_id": "pgi-1", "cluster_id": "pgc-1"}, False),
    ):
        diags = Diagnostics()
        resource.validate(diags, "pgfleet_tenant", {"tenant_id": "tenant-abc", **parents})
        assert diags.has_errors() != valid, parents
    assert diags.diagnostics[0].detail == "set exactly one of `instance_id`, `cluster_id`"


def _tenant(**changes: Any) -> dict[str, Any]:
    body = {
        "tenant_id": "tenant-abc", "database_name": "tenant_abc", "user": "tenant_abc_user", "created_at": "",
        "mode": "database_per_tenant", "schema_name": None, "status": "active", "writes_suspended": False,
        "quota": {"max_storage_mb": None, "max_connections": 5}, "quota_used": {"storage_mb": 7.5, "connections": 0},
    }  # fmt: skip
    return {**body, **changes}


def test_a_tenant_keeps_what_only_its_creation_showed() -> None:
    created = _tenant(
        credentials={"username": "tenant_abc_user", "password": "generated-pw", "uri": "postgresql://t"}
    )
    state = to_state(TENANT, created, {"cluster_id": "pgc-1"})
    assert (state["id"], state["cluster_id"], state["instance_id"]) == ("tenant-abc", "pgc-1", None)
    assert (state["initial_user"], state["initial_password"], state["uri"]) == (
        "tenant_abc_user", "generated-pw", "postgresql://t",
    )  # fmt: skip
    assert state["quota"] == {"max_storage_mb": None, "max_connections": 5}
    assert TENANT.item_path(state) == "/api/v1/postgres/cluster/pgc-1/tenants/tenant-abc"
    assert to_state(TENANT, _tenant(), state)["initial_password"] == "generated-pw"


REPLICAS = "/api/v1/postgres/single/pgi-1/replicas"


def _replica(**changes: Any) -> dict[str, Any]:
    body = {
        "id": "pgr-1", "instance_id": "pgi-1", "name": "orders-db-r1", "tenant_id": "acme", "status": "running",
        "cpu": 1, "memory": 512, "endpoint": {"host": "127.0.0.1", "port": 15433}, "created_at": "",
        "updated_at": "", "operation_id": "op-r",
    }  # fmt: skip
    return {**body, **changes}


def test_a_read_replica_is_one_replica_read_back_from_the_listing() -> None:
    api = ScriptedApi(
        {
            ("POST", REPLICAS): [{"replicas": [_replica(status="creating")], "operation_ids": ["op-r"]}],
            ("GET", "/api/v1/operations/op-r"): _succeeded("op-r"),
            ("GET", REPLICAS): [{"replicas": [_replica(id="pgr-0"), _replica()]}, {"replicas": []}],
        }
    )
    resource = _resource(api, READ_REPLICA)
    planned = {a.name: Unknown for a in resource_schema(READ_REPLICA).attributes}
    diags = Diagnostics()
    state = resource.create(
        CreateContext(diags, "pgfleet_read_replica"), {**planned, "instance_id": "pgi-1", "memory": 512}
    )
    assert not diags.diagnostics
    assert api.calls[0] == ("POST", REPLICAS, {"replica_count": 1, "memory": 512})
    assert (state["id"], state["status"], state["port"], state["instance_id"]) == (
        "pgr-1",
        "running",
        15433,
        "pgi-1",
    )
    # No longer listed: gone, so Terraform plans to create it again.
    assert resource.read(ReadContext(Diagnostics(), "pgfleet_read_replica"), state) is None


def _cluster(nodes: int = 2, **changes: Any) -> dict[str, Any]:
    members = [
        {"id": f"n{i}", "name": f"ha-n{i}", "role": "primary" if i == 1 else "replica", "state": "running",
         "endpoint": {"host": "127.0.0.1", "port": 15000 + i}, "timeline": 1, "lag_bytes": 0}
        for i in range(1, nodes + 1)
    ]  # fmt: skip
    body = {
        "id": "pgc-1", "name": "ha", "tenant_id": "acme", "status": "running", "version": "15", "node_count": nodes,
        "replication_mode": "async", "primary": "n1", "nodes": members, "cpu": 1, "memory": 1024, "storage": 10,
        "database": "app", "username": "app_admin", "created_at": "", "updated_at": "", "operation_id": "op-1",
    }  # fmt: skip
    return {**body, **changes}


def test_scaling_a_cluster_plans_its_topology_as_known_after_apply() -> None:
    item = "/api/v1/postgres/cluster/pgc-1"
    api = ScriptedApi(
        {
            ("POST", f"{item}/scale"): [_cluster(status="scaling", operation_id="op-s")],
            ("GET", "/api/v1/operations/op-s"): _succeeded("op-s"),
            ("GET", item): [_cluster(3)],
        }
    )
    resource = _resource(api, CLUSTER)
    current = to_state(CLUSTER, _cluster(), {"password": "pw", "uri": "u", "read_only_uri": "r"})
    assert current["nodes"][1] == {"id": "n2", "role": "replica", "host": "127.0.0.1", "port": 15002}
    ctx = PlanContext(Diagnostics(), "pgfleet_cluster", changed_fields={"node_count"})
    planned = resource.plan(ctx, current, {**current, "node_count": 3})
    assert planned["nodes"] is Unknown and planned["primary"] is Unknown and planned["status"] is Unknown
    assert (planned["password"], planned["uri"]) == ("pw", "u")  # only a create shows them
    diags = Diagnostics()
    state = resource.update(UpdateContext(diags, "pgfleet_cluster"), current, {**planned, "node_count": 3})
    assert not diags.diagnostics and api.calls[0] == ("POST", f"{item}/scale", {"node_count": 3})
    assert [n["id"] for n in state["nodes"]] == ["n1", "n2", "n3"] and state["read_only_uri"] == "r"


def test_a_higher_version_is_an_upgrade_update_with_the_chosen_mode() -> None:
    item = "/api/v1/postgres/cluster/pgc-1"
    api = ScriptedApi(
        {
            ("POST", f"{item}/upgrade"): [
                {"resource_id": "pgc-1", "status": "upgrading", "operation_id": "op-u"}
            ],
            ("GET", "/api/v1/operations/op-u"): _succeeded("op-u"),
            ("GET", item): [_cluster(version="18")],
        }
    )
    resource = _resource(api, CLUSTER)
    current = {**to_state(CLUSTER, _cluster(), {"password": "pw", "uri": "u"}), "upgrade_mode": "in_place"}
    diags = Diagnostics()
    # The mode alone changes nothing on the server: the state takes it.
    moded = resource.update(
        UpdateContext(diags, "pgfleet_cluster"), current, {**current, "upgrade_mode": "blue_green"}
    )
    assert not api.calls and moded["upgrade_mode"] == "blue_green"
    state = resource.update(UpdateContext(diags, "pgfleet_cluster"), moded, {**moded, "version": "18"})
    assert not diags.diagnostics, diags.diagnostics
    assert api.calls[0] == ("POST", f"{item}/upgrade", {"target_version": "18", "mode": "blue_green"})
    assert state["version"] == "18" and state["upgrade_mode"] == "blue_green" and state["password"] == "pw"
    # Never sent on create.
    assert "upgrade_mode" in CLUSTER.local


def test_a_quota_is_put_on_its_parent_imported_by_its_id_and_reset_on_destroy() -> None:
    path = "/api/v1/postgres/cluster/pgc-1/quota"
    view = {
        "resource_id": "pgc-1", "resource_type": "cluster", "max_storage_mb": 100, "max_connections": None,
        "alert_thresholds": {"storage_percent": 80, "connections_percent": 90}, "auto_pause_after_minutes": None,
        "storage_limit_mb": 10240, "writes_suspended": False,
    }  # fmt: skip
    wrong_kind = ApiError(
        "GET", "/api/v1/postgres/single/pgc-1/quota", 422, "validation_error", "not an instance id"
    )
    api = ScriptedApi(
        {
            ("PUT", path): [view, {**view, "max_storage_mb": None}],
            ("GET", path): [view, view],
            ("GET", "/api/v1/postgres/single/pgc-1/quota"): [wrong_kind],
        }
    )
    resource = _resource(api, QUOTA)
    planned = {
        **{a.name: Unknown for a in resource_schema(QUOTA).attributes},
        "cluster_id": "pgc-1", "instance_id": None, "max_storage_mb": 100, "max_connections": None,
        "alert_thresholds": {"storage_percent": 80, "connections_percent": 90}, "auto_pause_after_minutes": None,
    }  # fmt: skip
    diags = Diagnostics()
    state = resource.create(CreateContext(diags, "pgfleet_quota"), planned)
    assert not diags.diagnostics
    assert api.calls[0] == (
        "PUT",
        path,
        {"max_storage_mb": 100, "alert_thresholds": view["alert_thresholds"]},
    )
    assert (state["id"], state["storage_limit_mb"]) == ("pgc-1", 10240)
    imported = resource.import_(ImportContext(diags, "pgfleet_quota"), "pgc-1")
    assert not diags.diagnostics and imported == state
    assert resource.delete(DeleteContext(diags, "pgfleet_quota"), state) is None
    assert api.calls[-1] == ("PUT", path, {})


def test_a_schedule_keeps_the_spelling_of_its_configuration() -> None:
    answer = {
        "resource_id": "pgi-1", "full_backup_cron": "cron(0 3 * * ? *)", "incremental_backup_cron": None,
        "retention_days": 7, "enabled": True,
    }  # fmt: skip
    prior = {"instance_id": "pgi-1", "full_backup_cron": "0  3 * * ? *"}
    assert to_state(BACKUP_SCHEDULE, answer, prior)["full_backup_cron"] == "0  3 * * ? *"
    changed = {**answer, "full_backup_cron": "cron(0 4 * * ? *)"}
    assert to_state(BACKUP_SCHEDULE, changed, prior)["full_backup_cron"] == "cron(0 4 * * ? *)"
