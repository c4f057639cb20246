"""The Postman collection (tests/postman, generated from the OpenAPI document) run by newman
against the real local stack: the lifecycle folder, the setup of real resources, every
operation of the document on them, the teardown. Every request is checked: no 5xx, a 4xx in
the error shape; the hand-written ones check their statuses, bodies and operations."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgfleet.core.auth import LocalTokens
from tests.helpers import REPO, LocalStack, running_stack

POSTMAN = REPO / "tests" / "postman"
NEWMAN = REPO / ".venv" / "node" / "node_modules" / ".bin" / "newman"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-newman-") as s:
        yield s


def _items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        out.extend(_items(item["item"]) if "item" in item else [item])
    return out


def test_newman_runs_the_collection_without_a_failed_assertion(
    stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert NEWMAN.exists(), f"{NEWMAN} is missing: run `make install`"
    # A platform admin for the generated requests, an operator of acme for the hand-written
    # folders: as `stack.token` mints them, each with a subject of its own and the "system"
    # rate-limit plan (the run is about the API, not the limiter; a 429 would pass the checks
    # of a generated request but break the chain of ids).
    tokens = LocalTokens(stack.home)
    admin = tokens.mint("admin", None, sub="newman-admin", plan="system")
    operator = tokens.mint("operator", "acme", sub="newman-operator", plan="system")
    collection = json.loads((POSTMAN / "pgfleet.postman_collection.json").read_text())
    report = tmp_path / "newman.json"
    proc = subprocess.run(
        [str(NEWMAN), "run", str(POSTMAN / "pgfleet.postman_collection.json"),
         "--environment", str(POSTMAN / "local.postman_environment.json"),
         "--env-var", f"baseUrl={stack.url}", "--env-var", f"token={admin}", "--env-var", f"operatorToken={operator}",
         "--reporters", "cli,json", "--reporter-json-export", str(report),
         "--timeout-request", "60000", "--color", "off", "--disable-unicode"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    run = json.loads(report.read_text())["run"]
    stats, failures = run["stats"], run["failures"]
    with capsys.disabled():
        print(
            f"\nnewman: {stats['items']['total']} items, {stats['requests']['total']} requests (polls included), "
            f"{stats['assertions']['total']} assertions, {stats['assertions']['failed']} failed, "
            f"{(run['timings']['completed'] - run['timings']['started']) / 1000:.0f}s"
        )
    brief = [(f["source"].get("name"), f["error"].get("test"), f["error"].get("message")) for f in failures]
    assert proc.returncode == 0, (brief[:20], output[-6000:])
    assert failures == [] and stats["assertions"]["failed"] == 0, brief[:20]
    # every request of the collection ran, once
    expected = _items(collection["item"])
    assert stats["items"]["total"] == len(expected), (stats["items"], len(expected))
    assert stats["requests"]["failed"] == 0 and stats["testScripts"]["failed"] == 0, stats
    ran = [e["item"]["name"] for e in run["executions"]]
    assert {i["name"] for i in expected} <= set(ran)
    # a generated request has one check at least (no 5xx), a hand-written one two (and its status)
    generated = len(_items(collection["item"][2]["item"]))
    assert stats["assertions"]["total"] >= generated + 2 * (len(expected) - generated), stats["assertions"]
