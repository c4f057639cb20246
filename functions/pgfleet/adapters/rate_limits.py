"""RateCounter on its own DynamoDB table: one item per key and hour, one atomic update per
request.

Item: `pk = "<key>#<hour_start>"`, `n` the hour's count, `m<minute>` each minute's count,
`expires_at` the table's TTL attribute (an hour after the window ends). One UpdateItem with
ADD increments both counts and returns them (ReturnValues=UPDATED_NEW), so concurrent API
processes never lose a count and a request costs one round trip.
"""

from __future__ import annotations

from typing import Any

from pgfleet.adapters.aws import client
from pgfleet.core.errors import StoreError
from pgfleet.ports.rate_limits import RateCounter, WindowCounts

TTL_ATTRIBUTE = "expires_at"
RATE_LIMIT_TABLE_SCHEMA: dict[str, Any] = {
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "BillingMode": "PAY_PER_REQUEST",
}


class DynamoDBRateCounter(RateCounter):
    def __init__(self, table_name: str) -> None:
        self._table = table_name

    def hit(self, key: str, hour_start: int, minute: int, expires_at: int) -> WindowCounts:
        if not 0 <= minute < 60:
            raise ValueError(f"minute {minute} is not 0-59")
        try:
            resp = client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": f"{key}#{hour_start}"}},
                UpdateExpression="ADD #n :one, #m :one SET #e = if_not_exists(#e, :exp)",
                ExpressionAttributeNames={"#n": "n", "#m": f"m{minute:02d}", "#e": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":one": {"N": "1"}, ":exp": {"N": str(int(expires_at))}},
                ReturnValues="UPDATED_NEW",
            )
        except Exception as exc:
            raise StoreError(f"could not count a request of {key}: {exc}") from exc
        attrs = resp.get("Attributes") or {}
        return WindowCounts(hour=int(attrs["n"]["N"]), minute=int(attrs[f"m{minute:02d}"]["N"]))

    def sweep_expired(self, now: int, *, dry_run: bool = False) -> tuple[int, int]:
        ddb = client("dynamodb")
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "#e <= :now",
            "ExpressionAttributeNames": {"#e": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {":now": {"N": str(int(now))}},
        }
        count, size = 0, 0
        try:
            while True:
                resp = ddb.scan(**kwargs)
                for item in resp.get("Items", []):
                    count += 1
                    size += sum(len(k) + len(str(v)) for k, v in item.items())
                    if not dry_run:
                        ddb.delete_item(TableName=self._table, Key={"pk": item["pk"]})
                last = resp.get("LastEvaluatedKey")
                if not last:
                    return count, size
                kwargs["ExclusiveStartKey"] = last
        except Exception as exc:
            raise StoreError(f"could not sweep expired rate-limit windows: {exc}") from exc
