"""A record's timeline, kept small: a DynamoDB item holds at most 400 KB."""

from __future__ import annotations

from typing import Any


def appended(record: dict[str, Any], entry: dict[str, Any], limit: int) -> dict[str, Any]:
    """The changes that append `entry` to `record["timeline"]`: past `limit` entries the oldest
    but the first (the creation) are dropped, and counted in `timeline_dropped`."""
    timeline = [*record["timeline"], entry]
    dropped = max(0, len(timeline) - limit)
    if not dropped:
        return {"timeline": timeline}
    return {
        "timeline": [timeline[0], *timeline[1 + dropped :]],
        "timeline_dropped": int(record.get("timeline_dropped") or 0) + dropped,
    }
