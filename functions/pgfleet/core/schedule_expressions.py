"""EventBridge Scheduler expressions: when is a schedule due next?

`rate(N unit)`, `cron(min hour day-of-month month day-of-week year)` (AWS's six fields, `?`
allowed in one of the day fields, day-of-week 1-7 = SUN-SAT or names, `L` not supported) and
`at(yyyy-mm-ddThh:mm:ss)`, all in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_DOW_NAMES = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MONTH_NAMES = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}


class ExpressionError(ValueError):
    pass


# The longest rate or at() horizon accepted: the next run must stay a date.
MAX_RATE_SECONDS = 10 * 366 * 86400


def rate_seconds(expression: str) -> int | None:
    """The period of a rate(...) expression in seconds (0 for rate(0 ...), which `validate`
    refuses and `next_after` never schedules), or None for another kind of expression."""
    m = _RATE.match(expression.strip())
    if not m:
        return None
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2).rstrip("s")]


def _field(spec: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int] | None:
    """The values a cron field allows; None means any."""
    if spec in ("*", "?"):
        return None
    values: set[int] = set()
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) < 1:
                raise ExpressionError(f"'{spec}': the step after / must be a whole number of at least 1")
            step = int(step_text)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high):
            raise ExpressionError(f"'{spec}' is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ExpressionError(f"'{text}' is not a number")
    return int(text)


def validate(expression: str) -> None:
    """Raise ExpressionError when `expression` is not a schedule expression we can run."""
    seconds = rate_seconds(expression)
    if seconds is not None:
        if not 0 < seconds <= MAX_RATE_SECONDS:
            # rate(0 minutes) would be due again as soon as it ran: back to back, for ever.
            raise ExpressionError(f"'{expression}': a rate must be at least 1 and at most 10 years")
        return
    at = _AT.match(expression.strip())
    if at:
        try:
            datetime.fromisoformat(at.group(1))
        except ValueError as exc:
            raise ExpressionError(f"'{expression}': {exc}") from None
        return
    _parse_cron(expression)


def _parse_cron(expression: str) -> tuple[set[int] | None, ...]:
    m = _CRON.match(expression.strip())
    if not m:
        raise ExpressionError(f"'{expression}' is not rate(...), cron(...) or at(...)")
    fields = m.group(1).split()
    if len(fields) != 6:
        raise ExpressionError("cron needs six fields: minutes hours day-of-month month day-of-week year")
    minute, hour, dom, month, dow, year = fields
    if "L" in dom or "W" in dom or "L" in dow or "#" in dow:
        raise ExpressionError("L, W and # are not supported")
    return (
        _field(minute, 0, 59),
        _field(hour, 0, 23),
        _field(dom, 1, 31),
        _field(month, 1, 12, _MONTH_NAMES),
        _field(dow, 1, 7, _DOW_NAMES),
        _field(year, 1970, 2199),
    )


def next_after(expression: str, after: datetime) -> datetime | None:
    """The first time strictly after `after` at which the schedule is due, or None."""
    after = after.astimezone(UTC)
    seconds = rate_seconds(expression)
    if seconds is not None:
        # A rate nobody may set (validate) never runs, rather than back to back or past 9999.
        return after + timedelta(seconds=seconds) if 0 < seconds <= MAX_RATE_SECONDS else None
    at = _AT.match(expression.strip())
    if at:
        try:
            when = datetime.fromisoformat(at.group(1)).replace(tzinfo=UTC)
        except ValueError:
            return None
        return when if when > after else None
    minutes, hours, doms, months, dows, years = _parse_cron(expression)
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    limit = after + timedelta(days=366 * 5)
    while t <= limit:
        aws_dow = (t.isoweekday() % 7) + 1  # Python: Mon=1..Sun=7; AWS: Sun=1..Sat=7
        day_ok = (doms is None or t.day in doms) and (dows is None or aws_dow in dows)
        if (
            (years is not None and t.year not in years)
            or (months is not None and t.month not in months)
            or not day_ok
        ):
            t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            continue
        if hours is not None and t.hour not in hours:
            t = (t + timedelta(hours=1)).replace(minute=0)
            continue
        if minutes is not None and t.minute not in minutes:
            t += timedelta(minutes=1)
            continue
        return t
    return None
