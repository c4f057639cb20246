"""Reading a server's log from where the last reading of the same reader stopped: the one log
reader of the domains that scan logs (locks: deadlocks; security: threats).

A reader (its metadata kind, e.g. `lock_log_scan`) keeps one high-water mark per server and
node: the newest line's time, and the keys of the lines at that time (several lines share a
millisecond). A reading asks the engine (`Engine.logs`, `ClusterEngine.node_logs`) for the
lines since the mark, less `context` for the lines before it the caller wants to see again
(who a pid was), and returns the lines past the mark as new. The mark moves with `save`, after
the caller stored what it found: a reading that crashes before is read again by the next, so
what a caller derives from a line must be idempotent (record ids from `line_key`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, Conflict
from pgfleet.domains import clusters
from pgfleet.domains.servers.service import Target
from pgfleet.ports.engine import LogLine


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def line_key(line: LogLine) -> str:
    """What identifies a line of one server's log (the session and its line number in jsonlog)."""
    if line.session_id and line.line_num is not None:
        return f"{line.session_id}:{line.line_num}"
    digest = hashlib.sha1(line.message.encode()).hexdigest()[:12]
    return f"{line.pid}:{iso(line.timestamp)}:{digest}"


def log_nodes(target: Target) -> list[str | None]:
    """Whose logs a target's reading covers: an instance's own (None); the named node of a
    cluster, else every node's (what a node logged while primary stays in its log)."""
    if target.server.kind != clusters.KIND:
        return [None]
    if target.node is not None:
        return [target.node]
    return [str(n["id"]) for n in target.server.record.get("nodes", [])]


def mark_id(target_id: str, node: str | None) -> str:
    return f"{target_id}/{node or 'server'}"


@dataclass
class Reading:
    """One reading of one node's log: `new` past the mark, `lines` with the context before."""

    target: Target
    node: str | None
    kind: str
    mark: dict[str, Any] | None
    lines: list[LogLine]
    new: list[LogLine]
    note: str | None = None  # said when more lines were new than one reading takes

    @property
    def where(self) -> str:
        return self.target.target_id if self.node is None else f"{self.target.target_id}/{self.node}"

    def save(self, ports: Ports) -> None:
        """Move the mark past this reading's lines (nothing when it read none)."""
        if self.lines:
            save_mark(ports, self.kind, self.target, self.node, self.mark, self.lines)


def read_new(
    ports: Ports, kind: str, target: Target, node: str | None, max_lines: int, context: timedelta
) -> Reading:
    """The lines of the node's log past the reader's mark (see the module docstring). Raises
    EngineError or ServiceError when the log cannot be read."""
    mark = ports.store.get(kind, mark_id(target.target_id, node))
    mark_at = _at(mark["scanned_to"]) if mark else None
    seen = set(mark.get("keys", [])) if mark else set()
    since = mark_at - context if mark_at else None
    if node is None:
        lines = ports.engine.logs(target.target_id, max_lines, since)
    else:
        lines = ports.cluster_engine.node_logs(target.target_id, node, max_lines, since)
    new = [
        ln
        for ln in lines
        if mark_at is None or ln.timestamp > mark_at or (ln.timestamp == mark_at and line_key(ln) not in seen)
    ]
    reading = Reading(target, node, kind, mark, lines, new)
    if len(lines) >= max_lines and mark_at is not None and lines[0].timestamp > mark_at:
        reading.note = (
            f"{reading.where}: more than {max_lines} new log lines; lines before "
            f"{iso(lines[0].timestamp)} were not read"
        )
    return reading


def save_mark(
    ports: Ports,
    kind: str,
    target: Target,
    node: str | None,
    old: dict[str, Any] | None,
    lines: list[LogLine],
) -> None:
    newest = max(line.timestamp for line in lines)
    keys = sorted({line_key(ln) for ln in lines if ln.timestamp == newest})
    if old is not None:
        old_at = _at(old["scanned_to"])
        if old_at > newest:
            return
        if old_at == newest:
            keys = sorted(set(keys) | set(old.get("keys", [])))
    now = iso(datetime.now(UTC))
    values = {"scanned_to": iso(newest), "keys": keys, "updated_at": now}
    try:
        if old is None:
            ports.store.create(
                kind,
                {
                    "id": mark_id(target.target_id, node),
                    "tenant_id": target.tenant_id,
                    "target_id": target.target_id,
                    "node": node,
                    "created_at": now,
                    **values,
                },
            )
        else:
            ports.store.update(kind, old["id"], values, expected_revision=old.get("revision"))
    except (AlreadyExists, Conflict):
        # Another reading of the same log saved its mark meanwhile; what both derived is the
        # same (ids from the lines), and the next reading starts from its mark.
        pass
