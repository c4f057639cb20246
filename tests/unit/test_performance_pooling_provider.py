"""`pooler_mode` of pgfleet_instance against a scripted API: set on create, it configures the
pooler right after the create (connections/configure, then its operation); changed, it
reconfigures it; set to null, it turns the pooler off. The state reads it back from the
instance's `pooler`."""

from __future__ import annotations

from typing import Any

from tf.iface import CreateContext, UpdateContext
from tf.types import Unknown
from tf.utils import Diagnostics

from pgfleet.provider.catalog import INSTANCE
from pgfleet.provider.resources import resource_class
from pgfleet.provider.schema import resource_schema
from tests.unit.test_provider_schema import ITEM, ScriptedApi, _instance, _state

CONFIGURE = "/api/v1/performance/connections/configure"
POOLER = {"host": "127.0.0.1", "port": 16001, "pool_mode": "transaction", "status": "running"}


def test_pooler_mode_on_create_configures_the_pooler_after_the_create() -> None:
    created = _instance(status="creating", credentials={"password": "pw", "uri": "postgresql://x"})
    api = ScriptedApi({
        ("POST", "/api/v1/postgres/single"): [created],
        ("GET", "/api/v1/operations/op-1"): [{"id": "op-1", "status": "succeeded"}],
        ("POST", CONFIGURE): [{"targetId": "pgi-1", "operationId": "op-2"}],
        ("GET", "/api/v1/operations/op-2"): [{"id": "op-2", "status": "succeeded"}],
        ("GET", ITEM): [_instance(), _instance(pooler=POOLER)],
    })  # fmt: skip
    planned = {**{a.name: Unknown for a in resource_schema(INSTANCE).attributes}, "name": "orders-db",
               "pooler_mode": "transaction"}  # fmt: skip
    diags = Diagnostics()
    state = resource_class(INSTANCE)(api).create(CreateContext(diags, "pgfleet_instance"), planned)
    assert not diags.diagnostics
    assert api.calls[0] == ("POST", "/api/v1/postgres/single", {"name": "orders-db"})  # never sent on create
    assert (
        "POST",
        CONFIGURE,
        {"targetId": "pgi-1", "poolerConfiguration": {"poolMode": "transaction"}},
    ) in api.calls
    assert (state["pooler_mode"], state["pooler_port"]) == ("transaction", 16001)


def test_pooler_mode_changes_in_place_and_null_turns_it_off() -> None:
    api = ScriptedApi({
        ("POST", CONFIGURE): [{"operationId": "op-2"}, {"operationId": "op-3"}],
        ("GET", "/api/v1/operations/op-2"): [{"id": "op-2", "status": "succeeded"}],
        ("GET", "/api/v1/operations/op-3"): [{"id": "op-3", "status": "succeeded"}],
        ("GET", ITEM): [_instance(pooler={**POOLER, "pool_mode": "session"}), _instance(pooler=None)],
    })  # fmt: skip
    resource: Any = resource_class(INSTANCE)(api)
    current = _state(pooler_mode="transaction")
    diags = Diagnostics()
    state = resource.update(
        UpdateContext(diags, "pgfleet_instance"), current, {**current, "pooler_mode": "session"}
    )
    assert not diags.diagnostics and state["pooler_mode"] == "session"
    state = resource.update(UpdateContext(diags, "pgfleet_instance"), state, {**state, "pooler_mode": None})
    assert not diags.diagnostics and state["pooler_mode"] is None
    assert api.calls[-3] == (
        "POST",
        CONFIGURE,
        {"targetId": "pgi-1", "poolerConfiguration": {"enabled": False}},
    )
