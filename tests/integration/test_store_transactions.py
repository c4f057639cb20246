"""The DynamoDB adapter's `transact`: several creates and updates as one, against a real moto
server. A resource and its first operation are written together or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pgfleet.adapters import dynamodb
from pgfleet.adapters.dynamodb import DynamoDBMetadataStore
from pgfleet.core.errors import AlreadyExists, Conflict, NotFound
from pgfleet.ports.metadata import Create, Update
from tests.integration.test_store_paging import TABLE, ddb  # noqa: F401 (the moto fixture)


@pytest.fixture
def store(ddb: Any) -> Iterator[DynamoDBMetadataStore]:  # noqa: F811
    original = dynamodb.client
    dynamodb.client = lambda service: ddb  # type: ignore[assignment]
    try:
        yield DynamoDBMetadataStore(TABLE)
    finally:
        dynamodb.client = original  # type: ignore[assignment]


def _resource(rid: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "tenant_id": "acme",
        "created_at": "2024-05-01T00:00:00.000Z",
        "status": "creating",
        **extra,
    }


def test_a_resource_and_its_operation_are_stored_together(store: DynamoDBMetadataStore) -> None:
    resource, op = store.transact(
        [
            Create("txn-instance", _resource("pgi-1", operation_id="op-1"), ("txn-name#acme#one",)),
            Create("txn-operation", {"id": "op-1", "tenant_id": "acme", "parent_id": "pgi-1"}),
        ]
    )
    assert (resource["revision"], op["revision"]) == (1, 1)
    assert store.get("txn-instance", "pgi-1") == resource and store.get("txn-operation", "op-1") == op
    assert store.claimed("txn-name#acme#one") == {"owner": "pgi-1", "value": None}
    assert store.list("txn-operation", parent_id="pgi-1")[0] == [op]
    # An update and a create: the status moves with the new operation, each once.
    moved, second = store.transact(
        [
            Update("txn-instance", "pgi-1", {"status": "stopping", "operation_id": "op-2"}, 1),
            Create("txn-operation", {"id": "op-2", "tenant_id": "acme", "parent_id": "pgi-1"}),
        ]
    )
    assert (moved["revision"], moved["status"], second["id"]) == (2, "stopping", "op-2")
    assert (
        store.page("txn-instance", tenant_id="acme", filters={"status": "stopping"}, page=1, page_size=5)[1]
        == 1
    )


def test_a_failing_write_writes_nothing(store: DynamoDBMetadataStore) -> None:
    store.create("txn-instance", _resource("pgi-2"), ("txn-name#acme#two",))
    store.create("txn-operation", {"id": "op-taken", "tenant_id": "acme"})
    # The operation's id is taken: the new resource and its name claim are not written either.
    with pytest.raises(AlreadyExists):
        store.transact(
            [
                Create("txn-instance", _resource("pgi-3"), ("txn-name#acme#three",)),
                Create("txn-operation", {"id": "op-taken", "tenant_id": "acme"}),
            ]
        )
    assert store.get("txn-instance", "pgi-3") is None and store.claimed("txn-name#acme#three") is None
    # A name someone holds.
    with pytest.raises(AlreadyExists) as taken:
        store.transact(
            [
                Create("txn-instance", _resource("pgi-4"), ("txn-name#acme#two",)),
                Create("txn-operation", {"id": "op-4", "tenant_id": "acme"}),
            ]
        )
    assert "txn-name#acme#two" in taken.value.details["conflicts"]
    assert store.get("txn-instance", "pgi-4") is None and store.get("txn-operation", "op-4") is None
    # A stale revision: the status does not move and the operation is not stored.
    with pytest.raises(Conflict):
        store.transact(
            [
                Update("txn-instance", "pgi-2", {"status": "stopping"}, expected_revision=7),
                Create("txn-operation", {"id": "op-5", "tenant_id": "acme"}),
            ]
        )
    with pytest.raises(NotFound):
        store.transact([Update("txn-instance", "pgi-missing", {"status": "x"})])
    assert store.get("txn-instance", "pgi-2")["status"] == "creating"  # type: ignore[index]
    assert store.get("txn-operation", "op-5") is None
