"""The seed's `timeRange` query parameter, one way for every seed-003 endpoint.

Accepted forms:
- a duration back from now: `15m`, `24h`, `7d`, `4w`, or ISO 8601 `PT1H`, `P7D`, `P1DT12H`;
- an interval: `<start>/<end>` with ISO 8601 date-times (`2026-12-01T00:00:00Z/2026-12-01T06:00:00Z`),
  or `<start>/` (until now).
A time without a zone is UTC. Anything else, an end before its start, or a start further back
than the data is kept (`max_age`) is a 422 naming the form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pgfleet.core.errors import ValidationFailed

_SHORT = re.compile(r"^(\d{1,6})([smhdw])$")
_ISO = re.compile(r"^P(?:(\d{1,5})W)?(?:(\d{1,5})D)?(?:T(?:(\d{1,6})H)?(?:(\d{1,6})M)?(?:(\d{1,6})S)?)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
FORMS = "a duration (15m, 24h, 7d, PT1H, P7D) or an interval <start>/<end> of ISO 8601 times"


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime


def parse(
    text: str | None, *, default: timedelta, max_age: timedelta, now: datetime | None = None
) -> TimeRange:
    now = now or datetime.now(UTC)
    value = (text or "").strip()
    if not value:
        start, end = now - default, now
    elif "/" in value:
        first, _, second = value.partition("/")
        start = _instant(first)
        end = _instant(second) if second.strip() else now
    else:
        start, end = now - _duration(value), now
    if end <= start:
        raise ValidationFailed(
            f"timeRange {value!r}: its end is not after its start", details={"field": "timeRange"}
        )
    if start < now - max_age:
        raise ValidationFailed(
            f"timeRange {value!r} starts before the {max_age.days}-day retention of this data "
            f"(earliest {(now - max_age).isoformat()})",
            details={"field": "timeRange", "retention_days": max_age.days},
        )
    return TimeRange(start, end)


def _duration(value: str) -> timedelta:
    short = _SHORT.match(value)
    if short:
        seconds = int(short[1]) * _UNITS[short[2]]
    else:
        iso = _ISO.match(value.upper())
        if not iso or not any(iso.groups()) or value.upper().endswith("T"):
            raise _invalid(value)
        weeks, days, hours, minutes, secs = (int(g or 0) for g in iso.groups())
        seconds = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds <= 0:
        raise _invalid(value)
    return timedelta(seconds=seconds)


def _instant(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(value) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _invalid(value: str) -> ValidationFailed:
    return ValidationFailed(f"timeRange {value!r} is not {FORMS}", details={"field": "timeRange"})
