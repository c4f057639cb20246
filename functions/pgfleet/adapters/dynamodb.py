"""MetadataStore on one DynamoDB table.

Layout (single table): a record is the item `pk = "<kind>#<id>", sk = "record"` holding the
record as a JSON document in `doc` plus `revision`. Listing uses two sparse GSIs:
`by_kind` (gsi1pk = kind, or kind#tenant#<t>) and `by_parent` (gsi2pk = kind#parent#<p>),
both sorted by `created_at#id`. Unique keys and claims are items `pk = "claim#<key>"`.
Documents are JSON strings so nested values keep their types (DynamoDB would turn every
number into a Decimal).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pgfleet.adapters.aws import client, error_code
from pgfleet.core.errors import AlreadyExists, Conflict, NotFound, StoreError
from pgfleet.ports.metadata import MetadataStore, Record

TABLE_KEY_SCHEMA = {
    "AttributeDefinitions": [
        {"AttributeName": name, "AttributeType": "S"}
        for name in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")
    ],
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": index,
            "KeySchema": [
                {"AttributeName": f"{prefix}pk", "KeyType": "HASH"},
                {"AttributeName": f"{prefix}sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
        for index, prefix in (("by_kind", "gsi1"), ("by_parent", "gsi2"))
    ],
    "BillingMode": "PAY_PER_REQUEST",
}

_RECORD_SK = "record"


def _record_key(kind: str, record_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"{kind}#{record_id}"}, "sk": {"S": _RECORD_SK}}


def _claim_key(key: str) -> dict[str, Any]:
    return {"pk": {"S": f"claim#{key}"}, "sk": {"S": _RECORD_SK}}


def _item(kind: str, record: Record) -> dict[str, Any]:
    order = f"{record.get('created_at', '')}#{record['id']}"
    tenant = record.get("tenant_id")
    item: dict[str, Any] = {
        **_record_key(kind, record["id"]),
        "doc": {"S": json.dumps(record, separators=(",", ":"), default=str)},
        "revision": {"N": str(record["revision"])},
        # Tenant-scoped listing; admins list the kind-wide copy below through the same index.
        "gsi1pk": {"S": f"{kind}#tenant#{tenant}" if tenant else kind},
        "gsi1sk": {"S": order},
    }
    if record.get("parent_id"):
        item["gsi2pk"] = {"S": f"{kind}#parent#{record['parent_id']}"}
        item["gsi2sk"] = {"S": order}
    return item


def _index_entry(kind: str, record: Record) -> dict[str, Any]:
    """A kind-wide copy of the record, so admins can list every tenant's records with one
    query. Written in the same transaction as the record itself."""
    order = f"{record.get('created_at', '')}#{record['id']}"
    return {
        "pk": {"S": f"{kind}#{record['id']}"},
        "sk": {"S": "kind-index"},
        "doc": {"S": json.dumps(record, separators=(",", ":"), default=str)},
        "gsi1pk": {"S": kind},
        "gsi1sk": {"S": order},
    }


class DynamoDBMetadataStore(MetadataStore):
    def __init__(self, table_name: str) -> None:
        self._table = table_name

    @property
    def _ddb(self) -> Any:
        return client("dynamodb")

    def create(self, kind: str, record: Record, unique_keys: tuple[str, ...] = ()) -> Record:
        record = {**record, "revision": 1}
        items = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _item(kind, record),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Put": {"TableName": self._table, "Item": _index_entry(kind, record)}},
        ]
        for key in unique_keys:
            items.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {**_claim_key(key), "owner": {"S": record["id"]}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except Exception as exc:
            if error_code(exc) == "TransactionCanceledException":
                reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
                taken = [
                    label
                    for label, reason in zip(["id", "index", *unique_keys], reasons, strict=False)
                    if reason.get("Code") == "ConditionalCheckFailed"
                ]
                raise AlreadyExists(
                    f"{kind} already exists", details={"conflicts": taken or ["unknown"]}
                ) from exc
            raise StoreError(f"could not create {kind}: {exc}") from exc
        return record

    def get(self, kind: str, record_id: str) -> Record | None:
        try:
            resp = self._ddb.get_item(
                TableName=self._table, Key=_record_key(kind, record_id), ConsistentRead=True
            )
        except Exception as exc:
            raise StoreError(f"could not read {kind} {record_id}: {exc}") from exc
        item = resp.get("Item")
        return json.loads(item["doc"]["S"]) if item else None

    def update(
        self, kind: str, record_id: str, changes: Record, expected_revision: int | None = None
    ) -> Record:
        current = self.get(kind, record_id)
        if current is None:
            raise NotFound(f"{kind} {record_id} not found")
        if expected_revision is not None and current["revision"] != expected_revision:
            raise Conflict(f"{kind} {record_id} was changed concurrently; retry")
        updated = {**current, **changes, "revision": current["revision"] + 1}
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _item(kind, updated),
                            "ConditionExpression": "revision = :v",
                            "ExpressionAttributeValues": {":v": {"N": str(current["revision"])}},
                        }
                    },
                    {"Put": {"TableName": self._table, "Item": _index_entry(kind, updated)}},
                ]
            )
        except Exception as exc:
            if error_code(exc) == "TransactionCanceledException":
                raise Conflict(f"{kind} {record_id} was changed concurrently; retry") from exc
            raise StoreError(f"could not update {kind} {record_id}: {exc}") from exc
        return updated

    def delete(self, kind: str, record_id: str, unique_keys: tuple[str, ...] = ()) -> None:
        deletes = [
            {"Delete": {"TableName": self._table, "Key": _record_key(kind, record_id)}},
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": f"{kind}#{record_id}"}, "sk": {"S": "kind-index"}},
                }
            },
        ]
        deletes += [{"Delete": {"TableName": self._table, "Key": _claim_key(k)}} for k in unique_keys]
        try:
            self._ddb.transact_write_items(TransactItems=deletes)
        except Exception as exc:
            raise StoreError(f"could not delete {kind} {record_id}: {exc}") from exc

    def list(
        self,
        kind: str,
        *,
        tenant_id: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> tuple[list[Record], str | None]:
        if parent_id is not None:
            index, attr, value = "by_parent", "gsi2pk", f"{kind}#parent#{parent_id}"
        elif tenant_id is not None:
            index, attr, value = "by_kind", "gsi1pk", f"{kind}#tenant#{tenant_id}"
        else:
            index, attr, value = "by_kind", "gsi1pk", kind
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": f"{attr} = :v",
            "ExpressionAttributeValues": {":v": {"S": value}},
            "Limit": limit,
        }
        if next_token:
            try:
                query["ExclusiveStartKey"] = json.loads(base64.urlsafe_b64decode(next_token.encode()))
            except ValueError as exc:
                raise NotFound("next_token is not valid") from exc
        try:
            resp = self._ddb.query(**query)
        except Exception as exc:
            raise StoreError(f"could not list {kind}: {exc}") from exc
        records = [json.loads(item["doc"]["S"]) for item in resp.get("Items", [])]
        last = resp.get("LastEvaluatedKey")
        token = base64.urlsafe_b64encode(json.dumps(last).encode()).decode() if last else None
        return records, token

    def claim(self, key: str, owner: str, value: Record | None = None) -> bool:
        item = {**_claim_key(key), "owner": {"S": owner}}
        if value is not None:
            item["value"] = {"S": json.dumps(value, default=str)}
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR #o = :o",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":o": {"S": owner}},
            )
            return True
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise StoreError(f"could not claim {key}: {exc}") from exc

    def claimed(self, key: str) -> Record | None:
        try:
            resp = self._ddb.get_item(TableName=self._table, Key=_claim_key(key), ConsistentRead=True)
        except Exception as exc:
            raise StoreError(f"could not read claim {key}: {exc}") from exc
        item = resp.get("Item")
        if not item:
            return None
        value = json.loads(item["value"]["S"]) if "value" in item else None
        return {"owner": item["owner"]["S"], "value": value}

    def release(self, key: str, owner: str | None = None) -> None:
        kwargs: dict[str, Any] = {"TableName": self._table, "Key": _claim_key(key)}
        if owner is not None:
            kwargs["ConditionExpression"] = "attribute_not_exists(pk) OR #o = :o"
            kwargs["ExpressionAttributeNames"] = {"#o": "owner"}
            kwargs["ExpressionAttributeValues"] = {":o": {"S": owner}}
        try:
            self._ddb.delete_item(**kwargs)
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return
            raise StoreError(f"could not release {key}: {exc}") from exc
