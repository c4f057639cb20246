"""MetadataStore on one DynamoDB table.

Layout (single table): a record is the item `pk = "<kind>#<id>", sk = "record"` holding the
record as a JSON document in `doc` plus `revision`. Listing uses two sparse GSIs:
`by_kind` (gsi1pk = kind, or kind#tenant#<t>) and `by_parent` (gsi2pk = kind#parent#<p>),
both sorted by `created_at#id`. Unique keys and claims are items `pk = "claim#<key>"`.
Documents are JSON strings so nested values keep their types (DynamoDB would turn every
number into a Decimal). Each top-level scalar field is also an attribute `f_<field>`, so
`page` and `tally` filter with a FilterExpression in the store (items written before these
attributes existed gain them at their next update).
"""

from __future__ import annotations

import base64
import builtins
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

from pgfleet.adapters.aws import client, error_code
from pgfleet.core.errors import AlreadyExists, Conflict, NotFound, StoreError
from pgfleet.ports.metadata import (
    FILTERABLE_STRING_LENGTH,
    Create,
    Filters,
    MetadataStore,
    Range,
    Record,
    Update,
    Write,
)

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
_INDEX_SK = "kind-index"
_FIELD = "f_"
# Keys read per request while skipping earlier pages of a filtered listing.
_SKIP_BATCH = 500


def _scalar(value: Any) -> dict[str, Any] | None:
    """The attribute value of a filterable field value, or None."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float) and math.isfinite(value):
        return {"N": str(value)}
    if isinstance(value, str) and len(value) <= FILTERABLE_STRING_LENGTH:
        return {"S": value}
    return None


def _python(value: dict[str, Any] | None) -> Any:
    if value is None:
        return None
    if "BOOL" in value:
        return value["BOOL"]
    if "N" in value:
        try:
            return int(value["N"])
        except ValueError:
            return float(value["N"])
    return value.get("S")


def _field_attributes(record: Record) -> dict[str, Any]:
    fields = {f"{_FIELD}{name}": _scalar(value) for name, value in record.items()}
    return {name: value for name, value in fields.items() if value is not None}


def _scope(kind: str, tenant_id: str | None, parent_id: str | None) -> tuple[str, str, str]:
    """(index, partition attribute, partition value) of a listing."""
    if parent_id is not None:
        return "by_parent", "gsi2", f"{kind}#parent#{parent_id}"
    if tenant_id is not None:
        return "by_kind", "gsi1", f"{kind}#tenant#{tenant_id}"
    return "by_kind", "gsi1", kind


class _NothingMatches(Exception):
    """A filter no record can match (one of an empty set)."""


def _filter_expression(filters: Filters, names: dict[str, str], values: dict[str, Any]) -> list[str]:
    """Conditions of `MetadataStore.page`'s filters; fills `names` and `values`."""

    def value(slot: str, wanted: Any) -> str:
        attribute = _scalar(wanted)
        if attribute is None:
            raise ValueError(f"cannot filter on {wanted!r}: not a short string, a number or a boolean")
        values[slot] = attribute
        return slot

    parts = []
    for i, (field, wanted) in enumerate(filters.items()):
        name = f"#f{i}"
        names[name] = f"{_FIELD}{field}"
        if wanted is None:
            parts.append(f"attribute_not_exists({name})")
        elif isinstance(wanted, Range):
            if wanted.low is not None and wanted.high is not None:
                low, high = value(f":f{i}lo", wanted.low), value(f":f{i}hi", wanted.high)
                parts.append(f"{name} BETWEEN {low} AND {high}")
            elif wanted.low is not None:
                parts.append(f"{name} >= {value(f':f{i}lo', wanted.low)}")
            elif wanted.high is not None:
                parts.append(f"{name} <= {value(f':f{i}hi', wanted.high)}")
            else:
                parts.append(f"attribute_exists({name})")
        elif isinstance(wanted, list | tuple | set | frozenset):
            if not wanted:
                raise _NothingMatches
            slots = [value(f":f{i}_{j}", one) for j, one in enumerate(sorted(wanted, key=str))]
            parts.append(f"{name} IN ({', '.join(slots)})")
        else:
            parts.append(f"{name} = {value(f':f{i}', wanted)}")
    return parts


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
        **_field_attributes(record),
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
        "sk": {"S": _INDEX_SK},
        "doc": {"S": json.dumps(record, separators=(",", ":"), default=str)},
        "gsi1pk": {"S": kind},
        "gsi1sk": {"S": order},
        **_field_attributes(record),
    }


class DynamoDBMetadataStore(MetadataStore):
    def __init__(self, table_name: str) -> None:
        self._table = table_name

    @property
    def _ddb(self) -> Any:
        return client("dynamodb")

    def _create_items(
        self, kind: str, record: Record, unique_keys: tuple[str, ...]
    ) -> builtins.list[dict[str, Any]]:
        """The transaction items of a create: the record (only if new), its kind-wide copy,
        and one claim per unique key (only if unclaimed)."""
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
        return items

    def _updated(
        self, kind: str, record_id: str, changes: Record, expected_revision: int | None
    ) -> tuple[Record, builtins.list[dict[str, Any]]]:
        """The record after an update, and the transaction items that write it only if its
        revision is still the one read here."""
        current = self.get(kind, record_id)
        if current is None:
            raise NotFound(f"{kind} {record_id} not found")
        if expected_revision is not None and current["revision"] != expected_revision:
            raise Conflict(f"{kind} {record_id} was changed concurrently; retry")
        updated = {**current, **changes, "revision": current["revision"] + 1}
        items = [
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
        return updated, items

    def create(self, kind: str, record: Record, unique_keys: tuple[str, ...] = ()) -> Record:
        (stored,) = self.transact([Create(kind, record, unique_keys)])
        return stored

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
        (stored,) = self.transact([Update(kind, record_id, changes, expected_revision)])
        return stored

    def transact(self, writes: Sequence[Write]) -> builtins.list[Record]:
        if not 1 <= len(writes) <= 10:
            raise ValueError("a transaction holds 1 to 10 writes")
        stored: builtins.list[Record] = []
        items: builtins.list[dict[str, Any]] = []
        # (label, write) of each item, to say which condition failed.
        owners: builtins.list[tuple[str, Write]] = []
        for write in writes:
            if isinstance(write, Create):
                record = {**write.record, "revision": 1}
                new_items = self._create_items(write.kind, record, write.unique_keys)
                labels = ["id", "index", *write.unique_keys]
            else:
                record, new_items = self._updated(
                    write.kind, write.record_id, write.changes, write.expected_revision
                )
                labels = ["revision", "index"]
            stored.append(record)
            items += new_items
            owners += [(label, write) for label in labels]
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except Exception as exc:
            if error_code(exc) != "TransactionCanceledException":
                what = ", ".join(sorted({w.kind for w in writes}))
                raise StoreError(f"could not write {what}: {exc}") from exc
            reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
            failed = [
                owner
                for owner, reason in zip(owners, reasons, strict=False)
                if reason.get("Code") == "ConditionalCheckFailed"
            ]
            moved = [w for _, w in failed if isinstance(w, Update)]
            if not failed and all(isinstance(w, Update) for w in writes):
                moved = [w for w in writes if isinstance(w, Update)]  # no reasons: as update did
            if moved:
                update = moved[0]
                raise Conflict(f"{update.kind} {update.record_id} was changed concurrently; retry") from exc
            kind = failed[0][1].kind if failed else writes[0].kind
            raise AlreadyExists(
                f"{kind} already exists", details={"conflicts": [label for label, _ in failed] or ["unknown"]}
            ) from exc
        return stored

    def delete(self, kind: str, record_id: str, unique_keys: tuple[str, ...] = ()) -> None:
        deletes = [
            {"Delete": {"TableName": self._table, "Key": _record_key(kind, record_id)}},
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": f"{kind}#{record_id}"}, "sk": {"S": _INDEX_SK}},
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
        index, prefix, value = _scope(kind, tenant_id, parent_id)
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": f"{prefix}pk = :v",
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

    def _scoped_query(
        self, kind: str, tenant_id: str | None, parent_id: str | None, filters: Filters | None
    ) -> tuple[dict[str, Any], str]:
        """The Query of a scope and filters, and the attribute prefix of its index. Raises
        _NothingMatches for filters nothing can match."""
        index, prefix, value = _scope(kind, tenant_id, parent_id)
        names: dict[str, str] = {"#pk": f"{prefix}pk"}
        values: dict[str, Any] = {":scope": {"S": value}}
        conditions = _filter_expression(filters or {}, names, values)
        if prefix == "gsi1" and value == kind:
            # The kind-wide partition also holds tenant-less records themselves: count each
            # record once, through its kind-wide copy.
            names["#sk"] = "sk"
            values[":index"] = {"S": _INDEX_SK}
            conditions.append("#sk = :index")
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": "#pk = :scope",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if conditions:
            query["FilterExpression"] = " AND ".join(conditions)
        return query, prefix

    def _responses(self, query: dict[str, Any], what: str) -> Iterator[dict[str, Any]]:
        """Every response of a Query, following LastEvaluatedKey."""
        while True:
            try:
                resp = self._ddb.query(**query)
            except Exception as exc:
                raise StoreError(f"could not {what}: {exc}") from exc
            yield resp
            last = resp.get("LastEvaluatedKey")
            if not last:
                return
            query = {**query, "ExclusiveStartKey": last}

    def page(
        self,
        kind: str,
        *,
        tenant_id: str | None = None,
        parent_id: str | None = None,
        filters: Filters | None = None,
        page: int,
        page_size: int,
        newest_first: bool = True,
    ) -> tuple[builtins.list[Record], int]:
        if page < 1 or page_size < 1:
            raise ValueError("page and page_size start at 1")
        try:
            base, prefix = self._scoped_query(kind, tenant_id, parent_id, filters)
        except _NothingMatches:
            return [], 0
        base["ScanIndexForward"] = not newest_first
        what = f"page {kind}"
        total = sum(r["Count"] for r in self._responses({**base, "Select": "COUNT"}, what))
        offset = (page - 1) * page_size
        if offset >= total:
            return [], total
        start = self._key_after(base, prefix, offset, what) if offset else None
        query = {**base, "Limit": page_size if "FilterExpression" not in base else max(page_size, 100)}
        if start:
            query["ExclusiveStartKey"] = start
        records: builtins.list[Record] = []
        for resp in self._responses(query, what):
            records += [json.loads(item["doc"]["S"]) for item in resp.get("Items", [])]
            if len(records) >= page_size:
                break
        return records[:page_size], total

    def _key_after(self, base: dict[str, Any], prefix: str, skip: int, what: str) -> dict[str, Any] | None:
        """The key of the `skip`-th match, to start the next page after it, reading keys only."""
        keys = ["pk", "sk", f"{prefix}pk", f"{prefix}sk"]
        names = {**base["ExpressionAttributeNames"], **{f"#k{i}": k for i, k in enumerate(keys)}}
        query = {
            **base,
            "ExpressionAttributeNames": names,
            "ProjectionExpression": ", ".join(f"#k{i}" for i in range(len(keys))),
            # Unfiltered, every key read is a match: read exactly as many as to skip.
            "Limit": skip if "FilterExpression" not in base else max(skip, _SKIP_BATCH),
        }
        remaining = skip
        for resp in self._responses(query, what):
            items = resp.get("Items", [])
            if len(items) >= remaining:
                last = items[remaining - 1]
                return {k: last[k] for k in keys}
            remaining -= len(items)
        return None

    def tally(
        self,
        kind: str,
        fields: tuple[str, ...],
        *,
        tenant_id: str | None = None,
        parent_id: str | None = None,
        filters: Filters | None = None,
    ) -> dict[str, dict[Any, int]]:
        counts: dict[str, dict[Any, int]] = {field: {} for field in fields}
        try:
            query, _ = self._scoped_query(kind, tenant_id, parent_id, filters)
        except _NothingMatches:
            return counts
        projected = {f"#t{i}": f"{_FIELD}{field}" for i, field in enumerate(fields)}
        query["ExpressionAttributeNames"] = {**query["ExpressionAttributeNames"], **projected}
        query["ProjectionExpression"] = ", ".join(projected) or "#pk"
        for resp in self._responses(query, f"tally {kind}"):
            for item in resp.get("Items", []):
                for field in fields:
                    value = _python(item.get(f"{_FIELD}{field}"))
                    counts[field][value] = counts[field].get(value, 0) + 1
        return counts

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
