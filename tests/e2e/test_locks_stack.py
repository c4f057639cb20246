"""A new user's lock pile-up, through the real local stack: session A holds a row lock, B
waits on A, C waits on B. The API shows A as the root blocker of 2 with the tree, a dry run
changes nothing, auto-resolve respects its exclusions and then ends A only, B and C go on, and
the capture history keeps the chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack, wait_for

LOCKS = "/api/v1/locks"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-locks-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "locked-db"}, token)
    assert status == 202, body
    stack.wait_created(body["operation_id"], token)
    with psycopg.connect(body["credentials"]["uri"], autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL)")
        conn.execute("INSERT INTO orders SELECT g, 0 FROM generate_series(1, 10) g")
    return body


class Chain:
    """A holds row 1 (idle in transaction), B updates row 1 holding row 2 first, C updates
    row 2: C waits on B, B waits on A."""

    def __init__(self, uri: str) -> None:
        self.a = psycopg.connect(uri, application_name="holder-app")
        self.a.execute("UPDATE orders SET qty = qty + 1 WHERE id = 1")
        self.a_pid = self.a.info.backend_pid
        self.done: dict[str, BaseException | None] = {}
        self.threads = [
            threading.Thread(target=self._run, args=(uri, "b", ["UPDATE orders SET qty = qty + 1 WHERE id = 2",
                                                               "UPDATE orders SET qty = qty + 1 WHERE id = 1"]), daemon=True),
        ]  # fmt: skip
        self.threads[0].start()
        time.sleep(0.5)
        self.threads.append(
            threading.Thread(
                target=self._run,
                args=(uri, "c", ["UPDATE orders SET qty = qty + 1 WHERE id = 2"]),
                daemon=True,
            )
        )
        self.threads[1].start()

    def _run(self, uri: str, name: str, statements: list[str]) -> None:
        try:
            with psycopg.connect(uri, application_name=f"app-{name}") as conn:
                for statement in statements:
                    conn.execute(statement)
                conn.commit()
            self.done[name] = None
        except BaseException as exc:  # noqa: BLE001 (reported to the test)
            self.done[name] = exc

    def close(self) -> None:
        try:
            self.a.close()
        except psycopg.Error:
            pass
        for t in self.threads:
            t.join(timeout=10)


def _blocking(stack: LocalStack, token: str, iid: str) -> dict[str, Any]:
    status, body = stack.request("GET", f"{LOCKS}/blocking-sessions?targetId={iid}", token=token)
    assert status == 200, body
    return body


def test_bad_scope_and_input(stack: LocalStack, token: str, instance: dict) -> None:
    iid = instance["id"]
    assert stack.request("GET", f"{LOCKS}/activity?targetId=pgi-000000000000", token=token)[0] == 404
    other = stack.token("operator", "globex")
    assert stack.request("GET", f"{LOCKS}/activity?targetId={iid}", token=other)[0] == 404
    assert (
        stack.request(
            "GET",
            f"{LOCKS}/activity?targetId={iid}&timeRange=2026-12-02T10:00:00Z/2026-12-02T09:00:00Z",
            token=token,
        )[0]
        == 422
    )
    status, body = stack.request(
        "PUT", f"{LOCKS}/auto-resolve/config?tenantId=acme", {"maxSessionsPerCycle": 0}, token
    )
    assert status == 422, body
    assert (
        stack.request(
            "PUT", f"{LOCKS}/auto-resolve/config?tenantId=acme", {"maxSessionsPerCycle": 101}, token
        )[0]
        == 422
    )
    viewer = stack.token("viewer", "acme")
    body = {"reason": "x", "dryRun": True}
    assert (
        stack.request("POST", f"{LOCKS}/blocking-sessions/1/terminate?targetId={iid}", body, viewer)[0] == 403
    )
    assert (
        stack.request("PUT", f"{LOCKS}/auto-resolve/config?tenantId=acme", {"enabled": True}, viewer)[0]
        == 403
    )
    status, body = stack.request(
        "POST", f"{LOCKS}/blocking-sessions/999999/terminate?targetId={iid}", {"reason": "x"}, token
    )
    assert status == 404, body


def test_a_chain_is_one_root_blocker_of_two_with_its_tree(
    stack: LocalStack, token: str, instance: dict
) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    chain = Chain(uri)
    try:
        started = time.monotonic()
        wait_for(lambda: _blocking(stack, token, iid)["summary"]["totalBlockedSessions"] == 2, timeout=10,
                 what="the chain A <- B <- C")  # fmt: skip
        detected_after = time.monotonic() - started
        body = _blocking(stack, token, iid)
        (root,) = body["blockingSessions"]
        assert root["sessionPid"] == chain.a_pid and root["blockedSessionsCount"] == 2, root
        assert root["applicationName"] == "holder-app" and root["sessionState"] == "idle in transaction"
        assert root["targetId"] == iid and len(root["tree"]["children"]) == 1
        assert len(root["tree"]["children"][0]["children"]) == 1  # C under B under A
        assert "terminate it" in root["recommendedAction"], root
        assert detected_after < 5
        # Live activity: every lock, waiters with their blocking pid.
        status, activity = stack.request("GET", f"{LOCKS}/activity?targetId={iid}&pageSize=100", token=token)
        assert status == 200, activity
        waiting = [lk for lk in activity["locks"] if not lk["lockGranted"]]
        assert len(waiting) == 2 and activity["summary"]["waitingLocks"] == 2, activity["summary"]
        assert {lk["blockingPid"] for lk in waiting} >= {chain.a_pid}
        assert any(lk["tableName"] == "orders" and lk["schemaName"] == "public" for lk in activity["locks"])

        # A capture keeps the chain.
        status, captured = stack.request("POST", f"{LOCKS}/capture", {"targetId": iid}, token)
        assert status == 200 and captured["blockingLocks"] == 1 and captured["targetsCaptured"] == [iid], (
            captured
        )

        # A dry run changes nothing.
        path = f"{LOCKS}/blocking-sessions/{chain.a_pid}/terminate?targetId={iid}"
        status, dry = stack.request("POST", path, {"reason": "looking", "dryRun": True}, token)
        assert status == 200 and dry["action"] == "DRY_RUN" and dry["result"] == "SIMULATED", dry
        assert len(dry["affectedSessions"]) == 2
        assert _blocking(stack, token, iid)["summary"]["totalBlockedSessions"] == 2

        # Auto-resolve with A's application excluded does nothing...
        config = {"enabled": False, "maxBlockingDuration": 0, "severityThreshold": "LOW",
                  "excludedApplications": ["holder-app"], "maxSessionsPerCycle": 1}  # fmt: skip
        status, stored = stack.request("PUT", f"{LOCKS}/auto-resolve/config?tenantId=acme", config, token)
        assert status == 200 and stored["excludedApplications"] == ["holder-app"], stored
        status, none = stack.request("POST", f"{LOCKS}/auto-resolve", {"tenantId": "acme", "severityThreshold": "HIGH",
                                                                      "maxBlockingDuration": 0}, token)  # fmt: skip
        assert status == 200 and none["actionsExecuted"] == 0 and none["sessionsTerminated"] == 0, none
        assert any("excluded" in r["impactAssessment"] for r in none["resolutionResults"]), str(none)
        assert _blocking(stack, token, iid)["summary"]["totalBlockedSessions"] == 2

        # ... without the exclusion it ends A only, and B and C go on.
        stack.request(
            "PUT", f"{LOCKS}/auto-resolve/config?tenantId=acme", {"excludedApplications": []}, token
        )
        # The configuration's threshold (LOW, 0 s) applies: A, the root, goes; B is not a root.
        status, resolved = stack.request("POST", f"{LOCKS}/auto-resolve", {"tenantId": "acme"}, token)
        assert status == 200, resolved
        assert resolved["sessionsTerminated"] == 1, resolved
        (acted,) = [r for r in resolved["resolutionResults"] if r["action"] == "TERMINATED"]
        assert acted["sessionPid"] == chain.a_pid and acted["blockedSessionsFreed"] == 2
        wait_for(lambda: chain.done.get("b", 1) is None and chain.done.get("c", 1) is None, timeout=10,
                 what="B and C to commit")  # fmt: skip
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT qty FROM orders WHERE id IN (1, 2) ORDER BY id").fetchall() == [
                (1,),
                (2,),
            ]
    finally:
        chain.close()


def test_the_capture_history_names_the_chain(stack: LocalStack, token: str, instance: dict) -> None:
    iid = instance["id"]
    status, activity = stack.request(
        "GET", f"{LOCKS}/activity?targetId={iid}&timeRange=1h&includeResolved=true", token=token
    )
    assert status == 200, activity
    captured = [lk for lk in activity["locks"] if lk["capturedAt"]]
    assert any(not lk["lockGranted"] and lk["tableName"] == "orders" for lk in captured), captured
    held = [lk for lk in captured if lk["lockGranted"]]
    assert held and held[0]["resolutionAction"] == "TERMINATED", held
    # The ended blocker, as its last capture saw it.
    status, body = stack.request(
        "GET", f"{LOCKS}/blocking-sessions?targetId={iid}&includeResolved=true", token=token
    )
    assert status == 200, body
    (ended,) = body["blockingSessions"]
    assert ended["resolutionAction"] == "TERMINATED" and ended["blockedSessionsCount"] == 2, ended
    assert ended["resolutionReason"].startswith("auto-resolve") and not ended["autoKillEligible"]
    assert (
        stack.request("GET", f"{LOCKS}/blocking-sessions?targetId={iid}", token=token)[1]["blockingSessions"]
        == []
    )
    status, audit = stack.request(
        "GET", "/api/v1/system/audit?timeRange=1h&pageSize=100", token=stack.token("admin", None)
    )
    assert status == 200, audit
    terminations = [e for e in audit["events"] if e["action"] == "locks.terminate"]
    assert terminations and terminations[0]["details"]["reason"].startswith("auto-resolve"), terminations
