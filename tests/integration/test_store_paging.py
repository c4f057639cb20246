"""The DynamoDB adapter pages, counts and filters in the store, against a real moto server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from pgfleet.adapters import dynamodb
from pgfleet.adapters.dynamodb import TABLE_KEY_SCHEMA, DynamoDBMetadataStore
from pgfleet.ports.metadata import Range

TABLE = "pgfleet-paging"
COUNT = 250


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ddb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    port = _free_port()
    moto = Path(sys.executable).with_name("moto_server")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        client = boto3.client(
            "dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test", config=Config(retries={"max_attempts": 1}),
        )  # fmt: skip
        client.create_table(TableName=TABLE, **TABLE_KEY_SCHEMA)
        yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def store(ddb: Any) -> Iterator[DynamoDBMetadataStore]:
    original = dynamodb.client
    dynamodb.client = lambda service: ddb  # type: ignore[assignment]
    try:
        store = DynamoDBMetadataStore(TABLE)
        for i in range(COUNT):
            store.create("backup", {
                "id": f"bkp-{i:012x}", "tenant_id": "acme" if i % 5 else "globex", "parent_id": f"pgi-{i % 3}",
                "created_at": f"2024-03-01T{i // 60:02}:{i % 60:02}:00.000Z",
                "status": ("completed", "failed", "running")[i % 3], "size_bytes": i * 1000,
                "logical": i % 4 == 0, "finished_at": None, "tags": {"n": str(i)},
            })  # fmt: skip
        store.create("alert", {"id": "alert-1", "tenant_id": "acme", "created_at": "2024-01-01T00:00:00Z"})
        yield store
    finally:
        dynamodb.client = original  # type: ignore[assignment]


def _acme(newest_first: bool = True) -> list[int]:
    ids = [i for i in range(COUNT) if i % 5]
    return sorted(ids, reverse=newest_first)


def _ids(records: list[dict[str, Any]]) -> list[int]:
    return [int(r["id"][4:], 16) for r in records]


def test_page_three_newest_first_is_exact(store: DynamoDBMetadataStore) -> None:
    records, total = store.page("backup", tenant_id="acme", page=3, page_size=20)
    assert total == 200
    assert _ids(records) == _acme()[40:60]
    assert records[0]["tags"] == {"n": str(_acme()[40])}  # the whole record comes back
    oldest, _ = store.page("backup", tenant_id="acme", page=3, page_size=20, newest_first=False)
    assert _ids(oldest) == _acme(newest_first=False)[40:60]
    last, _ = store.page("backup", tenant_id="acme", page=10, page_size=21)
    assert _ids(last) == _acme()[189:]
    assert store.page("backup", tenant_id="acme", page=11, page_size=20) == ([], 200)


def test_totals_of_every_scope(store: DynamoDBMetadataStore) -> None:
    assert store.page("backup", tenant_id="globex", page=1, page_size=1)[1] == 50
    everything, total = store.page("backup", page=1, page_size=100)
    assert total == COUNT and len({r["id"] for r in everything}) == 100  # each record once
    assert _ids(everything) == list(range(COUNT - 1, COUNT - 101, -1))
    assert store.page("backup", parent_id="pgi-1", page=1, page_size=5)[1] == len(range(1, COUNT, 3))
    assert store.page("alert", page=1, page_size=5)[1] == 1


def test_filters_in_the_store(store: DynamoDBMetadataStore) -> None:
    def expect(keep: Any) -> list[int]:
        return [i for i in _acme() if keep(i)]

    failed, total = store.page("backup", tenant_id="acme", filters={"status": "failed"}, page=2, page_size=20)
    wanted = expect(lambda i: i % 3 == 1)
    assert total == len(wanted) and _ids(failed) == wanted[20:40]
    either, total = store.page("backup", tenant_id="acme", filters={"status": ["failed", "running"],
                               "logical": False}, page=3, page_size=10)  # fmt: skip
    wanted = expect(lambda i: i % 3 != 0 and i % 4 != 0)
    assert total == len(wanted) and _ids(either) == wanted[20:30]
    window = Range("2024-03-01T01:00:00.000Z", "2024-03-01T01:59:00.000Z")
    ranged, total = store.page("backup", tenant_id="acme", filters={"created_at": window,
                               "size_bytes": Range(low=100_000)}, page=1, page_size=100)  # fmt: skip
    assert _ids(ranged) == expect(lambda i: 100 <= i <= 119) and total == len(ranged)
    assert (
        store.page("backup", tenant_id="acme", filters={"finished_at": None}, page=1, page_size=1)[1] == 200
    )
    assert store.page("backup", tenant_id="acme", filters={"status": []}, page=1, page_size=5) == ([], 0)


def test_tally_counts_values_in_one_pass(store: DynamoDBMetadataStore) -> None:
    small = {"size_bytes": Range(high=9000)}  # acme's 1, 2, 3, 4, 6, 7, 8, 9
    counts = store.tally("backup", ("status", "logical"), tenant_id="acme", filters=small)
    assert counts == {"status": {"completed": 3, "failed": 3, "running": 2}, "logical": {True: 2, False: 6}}
    assert store.tally("backup", ("status",), filters={"status": []}) == {"status": {}}


def test_updates_keep_the_filter_attributes_current(store: DynamoDBMetadataStore) -> None:
    record = store.get("backup", f"bkp-{1:012x}")
    assert record is not None
    store.update("backup", record["id"], {"status": "archived"}, record["revision"])
    try:
        archived, total = store.page("backup", tenant_id="acme", filters={"status": "archived"}, page=1,
                                     page_size=5)  # fmt: skip
        assert total == 1 and archived[0]["id"] == record["id"]
        assert store.page("backup", filters={"status": "archived"}, page=1, page_size=5)[1] == 1
    finally:
        current = store.get("backup", record["id"])
        assert current is not None
        store.update("backup", record["id"], {"status": record["status"]}, current["revision"])


os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
