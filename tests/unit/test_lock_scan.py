"""Scanning a log for deadlocks with the ports faked: the lines are those a PostgreSQL 15
server wrote (tests/unit/test_lock_log.py); the server cannot be reached for names, so the
events say what they could not resolve. High-water marks per server and per cluster node."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from pgfleet.adapters.engines.local.postgres.logs import parse_log_line
from pgfleet.core.auth import Principal
from pgfleet.core.errors import EngineError
from pgfleet.domains.locks import deadlock_scan, service
from pgfleet.ports.engine import LogLine
from tests.unit.test_lock_log import ADVISORY_DEADLOCK, ADVISORY_WAIT, DEADLOCK, LOCK_TIMEOUT, WAIT_DEADLOCK

READER = Principal(sub="reader", tenant_id="acme", roles=("viewer",), permissions=frozenset({"locks:read"}))
LINES = [
    parse_log_line(raw) for raw in (WAIT_DEADLOCK, DEADLOCK, LOCK_TIMEOUT, ADVISORY_WAIT, ADVISORY_DEADLOCK)
]


class Unreachable:
    """A SqlTarget whose servers never answer."""

    @contextmanager
    def session(self, server_id: str, **_: Any) -> Iterator[Any]:
        raise EngineError(f"cannot connect to server {server_id}")
        yield  # pragma: no cover


def _since(lines: list[LogLine], limit: int, since: datetime | None) -> list[LogLine]:
    return [ln for ln in lines if since is None or ln.timestamp >= since][-limit:]


@pytest.fixture
def ports(fake_ports: Any) -> Any:
    fake_ports.sql = Unreachable()
    logs: dict[str, list[LogLine]] = {"pgi-0123456789ab": [ln for ln in LINES if ln]}
    fake_ports.engine.logs = lambda server_id, limit, since=None: _since(
        logs.get(server_id, []), limit, since
    )
    node_logs: dict[tuple[str, str], list[LogLine]] = {
        ("pgc-0123456789ab", "n2"): [ln for ln in LINES[:2] if ln]
    }
    fake_ports.cluster_engine.node_logs = lambda cid, nid, limit, since=None: _since(
        node_logs.get((cid, nid), []), limit, since
    )
    for kind, rid, extra in (("instance", "pgi-0123456789ab", {}),
                             ("cluster", "pgc-0123456789ab", {"nodes": [{"id": "n1"}, {"id": "n2"}]})):  # fmt: skip
        fake_ports.store.create(kind, {"id": rid, "tenant_id": "acme", "name": rid, "status": "running",
                                       "created_at": "2026-01-01T00:00:00Z", **extra})  # fmt: skip
    return fake_ports


def test_an_instance_log_gives_its_deadlocks_once(ports: Any) -> None:
    found = service.targets(ports, READER, "pgi-0123456789ab", None)
    result = deadlock_scan.detect(ports, found)
    assert result["deadlock_count"] == 2 and result["lock_timeouts_found"] == 1
    rows, advisory = result["deadlocks"]
    assert rows["deadlock_victim_pid"] == 10031 and rows["involved_sessions"] == [10031, 10032]
    assert rows["deadlock_duration"] == 1000.098 and rows["involved_users"] == ["app_owner"]
    # No name could be read inside the server: the tables are those the queries name.
    assert rows["affected_tables"] == ["payments", "orders"]
    assert set(rows["unavailable"]) == {"affectedTables", "involvedUsers", "recoveryTime"}
    assert "cannot connect" in rows["unavailable"]["affectedTables"]
    assert rows["prevention_suggestion"].startswith(
        "both transactions update orders and payments in opposite orders"
    )
    assert (
        advisory["lock_types_involved"] == ["ExclusiveLock on advisory"] and advisory["affected_tables"] == []
    )
    assert advisory["prevention_suggestion"].startswith("the sessions take advisory locks 2 and 1")
    assert advisory["pattern"] == "wait for advisory lock 1 / wait for advisory lock 2"
    again = deadlock_scan.detect(ports, found)
    assert again["deadlock_count"] == 0 and again["lines_scanned"] == 0
    mark = ports.store.get(deadlock_scan.SCAN_KIND, "pgi-0123456789ab/server")
    assert mark["scanned_to"].startswith("2026-12-02T03:10:22.821") and mark["tenant_id"] == "acme"


def test_every_node_of_a_cluster_is_scanned_with_its_own_mark(ports: Any) -> None:
    found = service.targets(ports, READER, "pgc-0123456789ab", None)
    result = deadlock_scan.detect(ports, found)
    (event,) = result["deadlocks"]
    assert event["node"] == "n2" and event["target_id"] == "pgc-0123456789ab"
    assert ports.store.get(deadlock_scan.SCAN_KIND, "pgc-0123456789ab/n2") is not None
    assert ports.store.get(deadlock_scan.SCAN_KIND, "pgc-0123456789ab/n1") is None  # an empty log: no mark
    only_n1 = service.targets(ports, READER, "pgc-0123456789ab", None, "n1")
    assert deadlock_scan.detect(ports, only_n1)["deadlock_count"] == 0
    assert deadlock_scan.detect(ports, found)["deadlock_count"] == 0


def test_a_huge_query_is_kept_clipped() -> None:
    query = "UPDATE orders SET note = '" + "x" * 100_000 + "' WHERE id = 1"
    kept = deadlock_scan.clip(query)
    assert (
        kept is not None and len(kept) < deadlock_scan.QUERY_LIMIT + 40 and kept.endswith("more characters]")
    )
    assert deadlock_scan.clip("SELECT 1") == "SELECT 1" and deadlock_scan.clip(None) is None
