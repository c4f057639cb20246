"""The in-memory HistoryStore keeps the port's contract, and the hourly expiry task sweeps
through the ports (the DynamoDB adapter: tests/integration/test_history_store.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgfleet.ports.history import HistoryRecord
from tests.unit.fakes import FakeHistoryStore, FakePorts

T0 = (datetime.now(UTC) - timedelta(days=1)).replace(second=0, microsecond=0)  # the sweep runs at "now"


def _records() -> list[HistoryRecord]:
    return [
        HistoryRecord("locks", target, tenant, T0 + timedelta(minutes=i), {"i": i, "even": i % 2 == 0}, ttl_seconds=600)
        for i in range(20)
        for target, tenant in (("pgi-a", "acme"), ("pgi-b", "globex"))
    ]  # fmt: skip


def test_fake_reads_only_its_scope_in_time_order() -> None:
    store = FakeHistoryStore()
    store.now = T0
    store.append("locks", _records())
    window = {"start": T0, "end": T0 + timedelta(minutes=10)}
    got = store.query("locks", **window, target_id="pgi-a", page=2, page_size=4)  # type: ignore[arg-type]
    assert [r.data["i"] for r in got.items] == [5, 4, 3, 2]
    assert got.total_items == got.scanned_count == 10
    filtered = store.query("locks", **window, tenant_id="globex", filters={"even": True}, newest_first=False)  # type: ignore[arg-type]
    assert [r.data["i"] for r in filtered.items] == [0, 2, 4, 6, 8] and filtered.scanned_count == 10
    assert store.query("locks", **window, target_id="pgi-a", tenant_id="globex").total_items == 0  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.query("locks", start=T0.replace(tzinfo=None), end=T0)


def test_expired_records_are_hidden_and_the_task_sweeps_them(fake_ports: FakePorts) -> None:
    from pgfleet.handlers import scheduled

    fake_ports.history.append("locks", _records())
    fake_ports.history.now = T0 + timedelta(minutes=15)  # the first 6 minutes of each target expired
    got = fake_ports.history.query("locks", start=T0, end=T0 + timedelta(hours=1), target_id="pgi-a")
    assert got.total_items == 14 and min(r.data["i"] for r in got.items) == 6
    result = scheduled.lambda_handler({"detail": {"task": "history_expiry"}}, None)
    assert result == {"task": "history_expiry", "actions": ["deleted 40 expired history records"]}
