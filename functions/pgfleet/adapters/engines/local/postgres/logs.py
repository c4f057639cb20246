"""Reading the server's jsonlog files, newest lines first."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from pgfleet.ports.engine import LogLine


def reverse_lines(path: Path, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """The non-empty lines of a file, last first, reading blocks from the end (log files can
    be large and only their tail is wanted)."""
    with path.open("rb") as fh:
        position = fh.seek(0, os.SEEK_END)
        tail = b""
        while position > 0:
            step = min(chunk_size, position)
            position -= step
            fh.seek(position)
            parts = (fh.read(step) + tail).split(b"\n")
            tail = parts[0]
            for line in reversed(parts[1:]):
                if line:
                    yield line
        if tail:
            yield tail


def parse_log_time(text: str) -> datetime | None:
    """Parse a jsonlog timestamp such as "2026-11-23 18:45:29.123 UTC"."""
    stamp, _, zone = text.rpartition(" ")
    if not stamp:
        stamp, zone = text, ""
    try:
        naive = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return None
    offset = re.fullmatch(r"([+-])(\d{2}):?(\d{2})?", zone)
    if offset:
        sign = -1 if offset.group(1) == "-" else 1
        delta = timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3) or 0))
        return naive.replace(tzinfo=timezone(sign * delta))
    # The engine sets log_timezone = 'UTC'; any other abbreviation is taken as UTC too.
    return naive.replace(tzinfo=UTC)


def parse_log_line(raw: bytes) -> LogLine | None:
    """One jsonlog line; None for a partial or foreign line."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    stamp = parse_log_time(str(entry.get("timestamp", "")))
    if stamp is None:
        return None
    return LogLine(
        timestamp=stamp,
        severity=str(entry.get("error_severity", "")),
        message=str(entry.get("message", "")),
        pid=_int(entry.get("pid")),
        user=_text(entry.get("user")),
        database=_text(entry.get("dbname")),
        application_name=_text(entry.get("application_name")),
        sqlstate=_text(entry.get("state_code")),
        detail=_text(entry.get("detail")),
        hint=_text(entry.get("hint")),
        context=_text(entry.get("context")),
        query=_text(entry.get("statement")),
        session_id=_text(entry.get("session_id")),
        line_num=_int(entry.get("line_num")),
        remote_host=_text(entry.get("remote_host")),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_logs(log_dir: Path, limit: int, since: datetime | None = None) -> list[LogLine]:
    """The newest `limit` jsonlog lines of the files in `log_dir` (at or after `since`),
    oldest first."""
    if limit <= 0:
        return []
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    try:
        files = sorted(log_dir.glob("*.json"), reverse=True)
    except OSError:
        return []
    collected: list[LogLine] = []
    for path in files:
        for raw in reverse_lines(path):
            line = parse_log_line(raw)
            if line is None:
                continue
            if since is not None and line.timestamp < since:
                # Files and their lines are chronological: everything further back is older.
                return collected[::-1]
            collected.append(line)
            if len(collected) >= limit:
                return collected[::-1]
    return collected[::-1]
