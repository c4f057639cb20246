"""HistoryStore on its own DynamoDB table (time is the sort key everywhere).

Layout, one item per record:
- table key: `pk = "<stream>#<target_id>"` (`-` for records without a target), `sk =
  "<at>#<id>"` with `at` in a fixed-width UTC form, so sort order is time order and a time
  range is one `BETWEEN` on the sort key of one partition: a target's query reads only that
  target's records.
- `by_tenant` GSI: `gsi1pk = "<stream>#tenant#<tenant_id>"`, `gsi1sk = sk` (sparse: records
  without a tenant are not in it): tenant-wide queries read only that tenant's records.
- `by_stream` GSI: `gsi2pk = "<stream>#shard#<n>"`, `gsi2sk = sk`, n = crc32(id) mod
  STREAM_SHARDS. Sharded so that a busy stream (API metrics, audit) spreads its writes over
  several index partitions instead of one hot one; an "everything" query reads the
  STREAM_SHARDS partitions and merges them by time.
- `by_expiry` GSI (keys only): `gsi3pk = "expiry#<YYYY-MM>"` of the expiry, range key
  `expires_at`: the sweep finds expired records without scanning the table.
- `expires_at` (epoch seconds) is the table's TTL attribute; queries filter out records past
  it, which DynamoDB may keep for up to two days (moto forever: hence `sweep_expired`).
- `doc`: the record as JSON (data keeps its types; DynamoDB would turn numbers into Decimal).

A query reads its whole time range once (DynamoDB has no offset, and `total_items` must be
exact), keeping only the asked page in memory; `filters` are applied while reading. The
read cost is that of the range, which is why ranges are bounded by the callers.
"""

from __future__ import annotations

import heapq
import json
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from pgfleet.adapters.aws import client
from pgfleet.core.errors import StoreError
from pgfleet.ports.history import (
    HistoryPage,
    HistoryRecord,
    HistoryStore,
    check_query,
    check_stream,
)

STREAM_SHARDS = 4
# The sweep looks at the expiry months from this many months back to the current one; older
# expired records are still never returned (and DynamoDB TTL deletes them in AWS).
SWEEP_LOOKBACK_MONTHS = 12
_BATCH = 25  # BatchWriteItem's limit
_NO_TARGET = "-"

HISTORY_TABLE_SCHEMA: dict[str, Any] = {
    "AttributeDefinitions": [
        *(
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk")
        ),
        {"AttributeName": "expires_at", "AttributeType": "N"},
    ],
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "GlobalSecondaryIndexes": [
        *(
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": f"{prefix}pk", "KeyType": "HASH"},
                    {"AttributeName": f"{prefix}sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, prefix in (("by_tenant", "gsi1"), ("by_stream", "gsi2"))
        ),
        {
            "IndexName": "by_expiry",
            "KeySchema": [
                {"AttributeName": "gsi3pk", "KeyType": "HASH"},
                {"AttributeName": "expires_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
    ],
    "BillingMode": "PAY_PER_REQUEST",
}
TTL_ATTRIBUTE = "expires_at"


def time_key(at: datetime) -> str:
    """`at` as a fixed-width UTC string: lexical order is time order."""
    if at.tzinfo is None:
        raise ValueError("history times must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expiry_bucket(epoch: int) -> str:
    return "expiry#" + datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m")


def _months_back(now: datetime, count: int) -> list[str]:
    year, month = now.year, now.month
    buckets = []
    for _ in range(count + 1):
        buckets.append(f"expiry#{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return buckets


def _item(record: HistoryRecord) -> dict[str, Any]:
    sk = f"{time_key(record.at)}#{record.id}"
    doc = {
        "stream": record.stream,
        "target_id": record.target_id,
        "tenant_id": record.tenant_id,
        "at": record.at.astimezone(UTC).isoformat(),
        "data": record.data,
        "ttl_seconds": record.ttl_seconds,
        "id": record.id,
    }
    item: dict[str, Any] = {
        "pk": {"S": f"{record.stream}#{record.target_id or _NO_TARGET}"},
        "sk": {"S": sk},
        "gsi2pk": {"S": f"{record.stream}#shard#{zlib.crc32(record.id.encode()) % STREAM_SHARDS}"},
        "gsi2sk": {"S": sk},
        "doc": {"S": json.dumps(doc, separators=(",", ":"), default=str)},
    }
    if record.tenant_id:
        item["gsi1pk"] = {"S": f"{record.stream}#tenant#{record.tenant_id}"}
        item["gsi1sk"] = {"S": sk}
    expires = record.expires_at
    if expires is not None:
        item[TTL_ATTRIBUTE] = {"N": str(expires)}
        item["gsi3pk"] = {"S": _expiry_bucket(expires)}
    return item


def _record(item: dict[str, Any]) -> HistoryRecord:
    doc = json.loads(item["doc"]["S"])
    return HistoryRecord(
        stream=doc["stream"],
        target_id=doc["target_id"],
        tenant_id=doc["tenant_id"],
        at=datetime.fromisoformat(doc["at"]),
        data=doc["data"],
        ttl_seconds=doc["ttl_seconds"],
        id=doc["id"],
    )


class DynamoDBHistoryStore(HistoryStore):
    def __init__(self, table_name: str) -> None:
        self._table = table_name

    @property
    def _ddb(self) -> Any:
        return client("dynamodb")

    def append(self, stream: str, records: Sequence[HistoryRecord]) -> None:
        check_stream(stream)
        for record in records:
            if record.stream != stream:
                raise ValueError(f"record {record.id} is of stream {record.stream!r}, not {stream!r}")
        self.append_all(records)

    def append_all(self, records: Sequence[HistoryRecord]) -> None:
        items: dict[tuple[str, str], dict[str, Any]] = {}
        for record in records:
            check_stream(record.stream)
            item = _item(record)
            items[(item["pk"]["S"], item["sk"]["S"])] = item  # one batch may not name a key twice
        puts = [{"PutRequest": {"Item": item}} for item in items.values()]
        for i in range(0, len(puts), _BATCH):
            self._write_batch(
                puts[i : i + _BATCH], f"append to {', '.join(sorted({r.stream for r in records}))}"
            )

    def _write_batch(self, requests: list[dict[str, Any]], what: str) -> None:
        pending = {self._table: requests}
        for attempt in range(8):
            try:
                resp = self._ddb.batch_write_item(RequestItems=pending)
            except Exception as exc:
                raise StoreError(f"could not {what}: {exc}") from exc
            pending = resp.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(0.05 * 2**attempt, 2.0))  # throttled: back off, then resend the rest
        raise StoreError(f"could not {what}: DynamoDB kept items unprocessed")

    def query(
        self,
        stream: str,
        *,
        start: datetime,
        end: datetime,
        target_id: str | None = None,
        tenant_id: str | None = None,
        filters: dict[str, Any] | None = None,
        page: int = 1,
        page_size: int = 50,
        newest_first: bool = True,
        visit: Callable[[HistoryRecord], None] | None = None,
    ) -> HistoryPage:
        check_stream(stream)
        check_query(start, end, page, page_size)
        scanned = [0]
        if end <= start:
            return HistoryPage(items=[], total_items=0, scanned_count=0)
        # sk = "<at>#<id>" > "<at>", so BETWEEN start and end is start <= at < end.
        low, high = time_key(start), time_key(end)
        now = str(int(time.time()))
        index, hash_attr, range_attr, partitions = self._scope(stream, target_id, tenant_id)
        sources = [
            self._read(index, hash_attr, range_attr, p, low, high, now, newest_first, scanned)
            for p in partitions
        ]
        merged = heapq.merge(*sources, key=lambda pair: pair[0], reverse=newest_first)
        offset, total, items = (page - 1) * page_size, 0, []
        for _, item in merged:
            record = _record(item)
            if tenant_id is not None and record.tenant_id != tenant_id:
                continue
            if not record.matches(filters):
                continue
            if visit is not None:
                visit(record)
            if offset <= total < offset + page_size:
                items.append(record)
            total += 1
        return HistoryPage(items=items, total_items=total, scanned_count=scanned[0])

    @staticmethod
    def _scope(
        stream: str, target_id: str | None, tenant_id: str | None
    ) -> tuple[str | None, str, str, list[str]]:
        """Index, its key attributes and the partitions a query reads: the target's, else the
        tenant's, else every shard of the stream."""
        if target_id is not None:
            return None, "pk", "sk", [f"{stream}#{target_id or _NO_TARGET}"]
        if tenant_id is not None:
            return "by_tenant", "gsi1pk", "gsi1sk", [f"{stream}#tenant#{tenant_id}"]
        return "by_stream", "gsi2pk", "gsi2sk", [f"{stream}#shard#{n}" for n in range(STREAM_SHARDS)]

    def _read(
        self,
        index: str | None,
        hash_attr: str,
        range_attr: str,
        partition: str,
        low: str,
        high: str,
        now: str,
        newest_first: bool,
        scanned: list[int],
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(sort key, item) of one partition's range, in order, adding to `scanned` what
        DynamoDB read."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#h = :h AND #r BETWEEN :lo AND :hi",
            "FilterExpression": "attribute_not_exists(#e) OR #e > :now",
            "ExpressionAttributeNames": {"#h": hash_attr, "#r": range_attr, "#e": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":h": {"S": partition},
                ":lo": {"S": low},
                ":hi": {"S": high},
                ":now": {"N": now},
            },
            "ScanIndexForward": not newest_first,
        }
        if index is not None:
            kwargs["IndexName"] = index
        while True:
            try:
                resp = self._ddb.query(**kwargs)
            except Exception as exc:
                raise StoreError(f"could not query history {partition}: {exc}") from exc
            scanned[0] += int(resp.get("ScannedCount", 0))
            for item in resp.get("Items", []):
                yield item[range_attr]["S"], item
            last = resp.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def purge(
        self, stream: str, before: datetime, *, tenant_id: str | None = None, dry_run: bool = False
    ) -> tuple[int, int]:
        check_stream(stream)
        if before.tzinfo is None:
            raise ValueError("before must be timezone-aware")
        index, hash_attr, range_attr, partitions = self._scope(stream, None, tenant_id)
        low, high = "0", time_key(before)
        count, size, keys = 0, 0, []
        for partition in partitions:
            # every record before `before`, expired ones included ("now" = 0 keeps them all)
            for _, item in self._read(index, hash_attr, range_attr, partition, low, high, "0", True, [0]):
                if tenant_id is not None and json.loads(item["doc"]["S"]).get("tenant_id") != tenant_id:
                    continue
                count += 1
                size += sum(len(k) + len(json.dumps(v)) for k, v in item.items())
                keys.append({"pk": item["pk"], "sk": item["sk"]})
        if not dry_run:
            for i in range(0, len(keys), _BATCH):
                self._write_batch(
                    [{"DeleteRequest": {"Key": k}} for k in keys[i : i + _BATCH]], f"purge {stream}"
                )
        return count, size

    def sweep_expired(self, now: datetime) -> int:
        cutoff = str(int(now.timestamp()))
        deleted = 0
        for bucket in _months_back(now, SWEEP_LOOKBACK_MONTHS):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": "by_expiry",
                "KeyConditionExpression": "gsi3pk = :b AND #e <= :now",
                "ExpressionAttributeNames": {"#e": TTL_ATTRIBUTE},
                "ExpressionAttributeValues": {":b": {"S": bucket}, ":now": {"N": cutoff}},
            }
            while True:
                try:
                    resp = self._ddb.query(**kwargs)
                except Exception as exc:
                    raise StoreError(f"could not find expired history in {bucket}: {exc}") from exc
                keys = [{"pk": item["pk"], "sk": item["sk"]} for item in resp.get("Items", [])]
                for i in range(0, len(keys), _BATCH):
                    chunk = keys[i : i + _BATCH]
                    self._write_batch([{"DeleteRequest": {"Key": k}} for k in chunk], "sweep expired history")
                    deleted += len(chunk)
                last = resp.get("LastEvaluatedKey")
                if not last:
                    break
                kwargs["ExclusiveStartKey"] = last
        return deleted
