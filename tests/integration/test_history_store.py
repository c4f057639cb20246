"""The DynamoDB HistoryStore against the local moto server: 10,000 records over a day, one
hour of one target read back by pages without reading any other target; tenant-wide and
stream-wide queries, filters, TTL expiry and the sweep."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pgfleet.ports.history import HistoryPage, HistoryRecord, HistoryStore
from tests.helpers import REPO, free_port

TARGETS = {"pgi-a": "acme", "pgi-b": "acme", "pgc-c": "acme", "pgi-d": "globex", "pgi-e": "globex"}
COUNT = 10_000
NOW = datetime.now(UTC)
DAY_START = (NOW - timedelta(hours=25)).replace(minute=0, second=0, microsecond=0)
HOUR = (DAY_START + timedelta(hours=5), DAY_START + timedelta(hours=6))


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m pgfleet.local.aws` (moto server, the local stack's AWS) on a free port."""
    state = tmp_path_factory.mktemp("aws")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "functions")}
    with (state / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgfleet.local.aws", "--port", str(port), "--state-dir", str(state)],
            env=env,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (state / "stderr").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto server did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _reset_clients() -> None:
    from pgfleet.adapters import aws
    from pgfleet.core import settings

    settings.get_settings.cache_clear()
    aws._client.cache_clear()


@contextmanager
def _aws_settings(aws: str, home: Path, **env_vars: str) -> Iterator[Any]:
    """The settings of a process pointed at the moto server `aws` (clients made afresh)."""
    from pgfleet.core.settings import get_settings

    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", aws)
        env.setenv("AWS_ACCESS_KEY_ID", "test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "test")
        env.setenv("PGFLEET_HOME", str(home))
        for name, value in env_vars.items():
            env.setenv(name, value)
        _reset_clients()
        try:
            yield get_settings()
        finally:
            _reset_clients()


@pytest.fixture(scope="module")
def store(aws: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HistoryStore]:
    """The store on a history table made by `ensure_resources`, as `pgfleet up` makes it."""
    from pgfleet.adapters.bootstrap import ensure_resources
    from pgfleet.adapters.history import DynamoDBHistoryStore

    home = tmp_path_factory.mktemp("home")
    with _aws_settings(aws, home, PGFLEET_HISTORY_TABLE="pgfleet-history-test") as settings:
        done = ensure_resources(settings)
        assert "table pgfleet-history-test: created" in done
        yield DynamoDBHistoryStore(settings.history_table_name)


@pytest.fixture(scope="module")
def written(store: HistoryStore) -> list[HistoryRecord]:
    """10,000 lock captures over a day, round-robin over five targets of two tenants, plus
    metric samples of the same targets in the same hours (another stream)."""
    targets = list(TARGETS)
    locks = [
        HistoryRecord(
            stream="locks",
            target_id=targets[i % len(targets)],
            tenant_id=TARGETS[targets[i % len(targets)]],
            at=DAY_START + timedelta(seconds=i * 86400 / COUNT),
            data={"seq": i, "pid": 1000 + i % 97, "state": "granted" if i % 3 == 0 else "waiting"},
        )
        for i in range(COUNT)
    ]
    store.append("locks", locks)
    metrics = [
        HistoryRecord(
            stream="metrics",
            target_id=t,
            tenant_id=TARGETS[t],
            at=HOUR[0] + timedelta(minutes=m),
            data={"cpu_percent": 12.5},
        )
        for t in targets
        for m in range(60)
    ]
    store.append("metrics", metrics)
    return locks


def _newest_first(records: list[HistoryRecord]) -> list[HistoryRecord]:
    return sorted(records, key=lambda r: (r.at, r.id), reverse=True)


def _all_pages(
    store: HistoryStore, page_size: int, **query: Any
) -> tuple[list[HistoryRecord], list[HistoryPage]]:
    pages, page = [], 1
    while True:
        got = store.query("locks", start=HOUR[0], end=HOUR[1], page=page, page_size=page_size, **query)
        pages.append(got)
        if page * page_size >= got.total_items:
            return [r for p in pages for r in p.items], pages
        page += 1


def test_an_hour_of_one_target_reads_only_that_target(
    store: HistoryStore, written: list[HistoryRecord]
) -> None:
    expected = _newest_first([r for r in written if r.target_id == "pgi-a" and HOUR[0] <= r.at < HOUR[1]])
    assert 70 < len(expected) < 100  # ~83: a fifth of an hour's 417 captures

    items, pages = _all_pages(store, 20, target_id="pgi-a")

    assert items == expected  # exact contents, newest first, every field round-tripped
    assert len(pages) == -(-len(expected) // 20)
    for page in pages:
        assert page.total_items == len(expected)
        # DynamoDB read exactly the returned records: none of another target, stream or hour.
        assert page.scanned_count == len(expected)
    assert isinstance(items[0].data["seq"], int) and items[0].at.tzinfo is not None
    beyond = store.query("locks", start=HOUR[0], end=HOUR[1], target_id="pgi-a", page=len(pages) + 1)
    assert beyond.items == [] and beyond.total_items == len(expected)


def test_oldest_first_and_range_bounds(store: HistoryStore, written: list[HistoryRecord]) -> None:
    first = written[0]  # exactly at DAY_START, of pgi-a
    got = store.query(
        "locks", start=first.at, end=first.at + timedelta(minutes=10), target_id="pgi-a", newest_first=False
    )
    expected = [
        r for r in written if r.target_id == "pgi-a" and first.at <= r.at < first.at + timedelta(minutes=10)
    ]
    assert got.items == expected and got.items[0] == first  # start is inclusive
    at_end = store.query("locks", start=first.at - timedelta(hours=1), end=first.at, target_id="pgi-a")
    assert at_end.total_items == 0 and at_end.scanned_count == 0  # end is exclusive


def test_tenant_wide_and_stream_wide_queries(store: HistoryStore, written: list[HistoryRecord]) -> None:
    in_hour = [r for r in written if HOUR[0] <= r.at < HOUR[1]]

    acme, pages = _all_pages(store, 50, tenant_id="acme")
    expected = _newest_first([r for r in in_hour if r.tenant_id == "acme"])
    assert acme == expected
    assert {r.target_id for r in acme} == {"pgi-a", "pgi-b", "pgc-c"}
    assert all(p.scanned_count == len(expected) for p in pages)  # nothing of globex was read

    everything, pages = _all_pages(store, 100)
    assert everything == _newest_first(in_hour)
    assert all(p.scanned_count == len(in_hour) for p in pages)  # no metric sample was read

    other_tenant = store.query("locks", start=HOUR[0], end=HOUR[1], target_id="pgi-d", tenant_id="acme")
    assert other_tenant.items == [] and other_tenant.total_items == 0


def test_filters(store: HistoryStore, written: list[HistoryRecord]) -> None:
    of_target = [r for r in written if r.target_id == "pgi-b" and HOUR[0] <= r.at < HOUR[1]]
    granted, _ = _all_pages(store, 25, target_id="pgi-b", filters={"state": "granted"})
    assert granted == _newest_first([r for r in of_target if r.data["state"] == "granted"])
    assert 0 < len(granted) < len(of_target)
    pids = {of_target[0].data["pid"], of_target[1].data["pid"]}
    some = store.query(
        "locks", start=HOUR[0], end=HOUR[1], target_id="pgi-b", filters={"pid": sorted(pids)}, page_size=100
    )
    assert some.items == _newest_first([r for r in of_target if r.data["pid"] in pids])
    assert some.scanned_count == len(of_target)  # filters do not narrow what is read


def test_append_is_idempotent_and_checks_its_records(
    store: HistoryStore, written: list[HistoryRecord]
) -> None:
    again = [r for r in written if r.target_id == "pgi-e"][:60]
    store.append("locks", again + again)  # a retried batch, even with duplicates in it
    got = store.query("locks", start=DAY_START, end=DAY_START + timedelta(days=1), target_id="pgi-e")
    assert got.total_items == COUNT // len(TARGETS)
    with pytest.raises(ValueError):
        store.append("audit", again[:1])
    with pytest.raises(ValueError):
        store.query("locks", start=datetime(2026, 1, 1), end=datetime(2026, 1, 2))


def test_expired_records_are_hidden_then_swept(store: HistoryStore, written: list[HistoryRecord]) -> None:
    from pgfleet.adapters.aws import client
    from pgfleet.core.settings import get_settings

    ttl = client("dynamodb").describe_time_to_live(TableName=get_settings().history_table_name)
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}

    at = NOW - timedelta(hours=2)
    events = [
        *(HistoryRecord("audit", "pgi-a", "acme", at + timedelta(seconds=i), {"n": i}, ttl_seconds=3600) for i in range(30)),
        *(HistoryRecord("audit", "pgi-a", "acme", at + timedelta(seconds=i), {"n": i}, ttl_seconds=None) for i in range(30, 35)),
        *(HistoryRecord("audit", None, None, at + timedelta(seconds=i), {"n": i}) for i in range(35, 40)),
    ]  # fmt: skip
    store.append("audit", events)
    window = {"start": at - timedelta(minutes=1), "end": NOW}

    for scope in ({"target_id": "pgi-a"}, {"tenant_id": "acme"}, {}):
        got = store.query("audit", **window, **scope, page_size=100)  # type: ignore[arg-type]
        kept = [e for e in events if e.ttl_seconds != 3600 and (not scope or e.target_id == "pgi-a")]
        assert got.items == _newest_first(kept), scope
        assert got.scanned_count == len(kept) + 30  # expired, hidden, not yet deleted

    assert store.sweep_expired(NOW) == 30
    assert store.sweep_expired(NOW) == 0
    got = store.query("audit", **window, target_id="pgi-a", page_size=100)  # type: ignore[arg-type]
    assert got.total_items == got.scanned_count == 5
    # The lock captures (expiring in 30 days) are untouched.
    assert store.query("locks", start=HOUR[0], end=HOUR[1], page_size=1).total_items == len(
        [r for r in written if HOUR[0] <= r.at < HOUR[1]]
    )


def test_the_scheduled_task_sweeps_through_the_ports(store: HistoryStore) -> None:
    from pgfleet.domains.platform.schedules import expire_history

    at = NOW - timedelta(days=3)
    store.append("capacity", [HistoryRecord("capacity", "pgi-d", "globex", at, {"bytes": 1}, ttl_seconds=60)])

    class Ports:
        history = store

    assert expire_history(Ports(), {"task": "history_expiry"}) == ["deleted 1 expired history records"]  # type: ignore[arg-type]
    assert expire_history(Ports(), {"task": "history_expiry"}) == ["no expired history records"]  # type: ignore[arg-type]


# --- the API platform's writes: one batch across streams, and the rate counters -------------


def test_append_all_writes_several_streams_in_one_batch(store: HistoryStore) -> None:
    at = NOW - timedelta(minutes=1)
    audit = HistoryRecord(
        "audit", "pgi-z", "acme", at, {"action": "GET /x", "result": "SUCCESS"}, ttl_seconds=3600
    )
    metric = HistoryRecord("api_metrics", "pgi-z", "acme", at, {"status_code": 200}, ttl_seconds=3600)
    store.append_all([audit, metric])
    seen: list[HistoryRecord] = []
    for stream, record in (("audit", audit), ("api_metrics", metric)):
        page = store.query(
            stream, start=at - timedelta(seconds=1), end=NOW, target_id="pgi-z", visit=seen.append
        )
        assert [r.id for r in page.items] == [record.id]
    assert {r.stream for r in seen} == {"audit", "api_metrics"}


def test_rate_counters_are_atomic_across_threads_and_expire(
    aws: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from pgfleet.adapters.aws import client
    from pgfleet.adapters.bootstrap import ensure_resources
    from pgfleet.adapters.rate_limits import DynamoDBRateCounter

    home = tmp_path_factory.mktemp("rate-home")
    with _aws_settings(aws, home, PGFLEET_RATE_LIMIT_TABLE="pgfleet-rate-test") as settings:
        done = ensure_resources(settings)
        assert (
            "table pgfleet-rate-test: created" in done
            and "table pgfleet-rate-test: TTL on expires_at enabled" in done
        )
        counter = DynamoDBRateCounter(settings.rate_limit_table_name)
        hour = 1_800_000_000
        with ThreadPoolExecutor(max_workers=8) as pool:
            counts = list(pool.map(lambda i: counter.hit("acme|u", hour, i % 2, hour + 7200), range(200)))
        # every increment counted once: the hour's counts are 1..200, each minute's 1..100
        assert sorted(c.hour for c in counts) == list(range(1, 201))
        assert sorted(c.minute for c in counts if c.hour) == sorted(list(range(1, 101)) * 2)
        assert counter.hit("acme|other", hour, 0, hour + 7200).hour == 1  # a key of its own
        item = client("dynamodb").get_item(
            TableName="pgfleet-rate-test", Key={"pk": {"S": f"acme|u#{hour}"}}
        )["Item"]
        assert item["expires_at"] == {"N": str(hour + 7200)} and item["n"] == {"N": "200"}
        ttl = client("dynamodb").describe_time_to_live(TableName="pgfleet-rate-test")["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"
