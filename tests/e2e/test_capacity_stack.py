"""Issue 17's capacity core, as a new user on the real local stack: capture a growing database
(rows inserted between captures), see its history and status, analyze its growth (LINEAR or
EXPONENTIAL, a finite time to capacity, a concrete action), read the forecasts and their
summary; too short a history is a 200 with no pattern and a reason; bad input is a 422; the
capacity events reach a real WebSocket client of the tenant, and no other tenant's."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.helpers import LocalStack, running_stack
from tests.receivers import http_receiver

C = "/api/v1/capacity"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-capacity-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "growing", "storage": 1}, token)
    assert status == 202, body
    stack.wait_created(body["operation_id"], token)
    with psycopg.connect(body["credentials"]["uri"], autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE public.events (id bigserial, payload text)")
    return body


def _grow(uri: str, rows: int) -> None:
    with psycopg.connect(uri, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            "INSERT INTO public.events (payload) SELECT repeat(md5(g::text), 8) FROM generate_series(1, %s) g",
            (rows,),
        )


def _capture(stack: LocalStack, token: str, iid: str) -> dict[str, Any]:
    status, body = stack.request("POST", f"{C}/utilization/capture", {"targetId": iid}, token)
    assert status == 200 and body["success"], body
    return body


def test_a_growing_database_is_captured_analyzed_and_forecast(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    first = _capture(stack, token, iid)
    storage = [d for d in first["data"] if d["resourceType"] == "STORAGE"][0]
    assert storage["capacity"] == 1024**3 and storage["unit"] == "bytes", storage
    assert {d["resourceType"] for d in first["data"]} >= {"STORAGE", "CONNECTIONS", "MEMORY"}

    _grow(uri, 20_000)
    _capture(stack, token, iid)
    status, short = stack.request("POST", f"{C}/growth/analyze", {"targetId": iid, "analysisDays": 1}, token)
    assert status == 200, short
    (early,) = [d for d in short["data"] if d["resourceType"] == "STORAGE"]
    assert (
        early["patternType"] is None and "at least 6" in early["reason"] and early["forecast30d"] is None
    ), early

    for _ in range(7):
        time.sleep(2)
        _grow(uri, 20_000)
        _capture(stack, token, iid)
    status, analyzed = stack.request(
        "POST", f"{C}/growth/analyze", {"targetId": iid, "resourceType": "STORAGE", "analysisDays": 1}, token
    )
    assert status == 200, analyzed
    (growth,) = analyzed["data"]
    print("growth:", {k: growth[k] for k in ("patternType", "growthRatePercentage", "confidenceLevel",
                                               "timeToCapacityDays", "recommendedAction", "backtestErrors")})  # fmt: skip
    assert growth["patternType"] in ("LINEAR", "EXPONENTIAL"), growth
    assert growth["timeToCapacityDays"] is not None and 0 < growth["timeToCapacityDays"] < 30, growth
    assert growth["intervals"]["7d"]["low"] <= growth["forecast7d"] <= growth["intervals"]["7d"]["high"]
    # minutes of growth extrapolated to a month: a runaway writer, said as such
    assert "find what grows storage this fast" in growth["recommendedAction"], growth

    status, found = stack.request("GET", f"{C}/forecasts?targetId={iid}&forecastHorizon=7d", token=token)
    assert status == 200, found
    (mine,) = [f for f in found["data"] if f["resourceType"] == "STORAGE"]
    assert (
        mine["projectedUsage"] == growth["forecast7d"]
        and mine["timeToCapacity"] == growth["timeToCapacityDays"]
    )
    status, summary = stack.request("GET", f"{C}/forecasts/summary?targetId={iid}", token=token)
    (top,) = [s for s in summary["data"] if s["resourceType"] == "STORAGE"]
    assert (
        top["priority"] == "URGENT"
        if growth["timeToCapacityDays"] < 7
        else top["priority"] in ("HIGH", "MEDIUM")
    )

    status, history = stack.request(
        "GET", f"{C}/utilization/history?targetId={iid}&resourceType=STORAGE", token=token
    )
    assert status == 200 and history["data"] and history["data"][-1]["samples"] >= 1, history
    status, current = stack.request("GET", f"{C}/status?targetId={iid}", token=token)
    assert status == 200 and {s["resourceType"] for s in current["data"]} >= {"STORAGE", "CONNECTIONS"}, (
        current
    )


def test_bad_input(stack: LocalStack, token: str, instance: dict[str, Any]) -> None:
    for days in (0, 3651):
        status, body = stack.request(
            "POST", f"{C}/growth/analyze", {"targetId": instance["id"], "analysisDays": days}, token
        )
        assert status == 422 and "analysisDays" in str(body), body
    status, body = stack.request("GET", f"{C}/utilization/history?startDate=yesterday", token=token)
    assert status == 422 and "startDate" in str(body), body
    viewer = stack.token("viewer", "acme")
    status, body = stack.request("POST", f"{C}/utilization/capture", {"targetId": instance["id"]}, viewer)
    assert status == 403, body


def test_a_storage_threshold_alert_fires_reaches_the_webhook_and_resolves(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    with http_receiver() as http:
        channel = {"type": "WEBHOOK", "name": "capacity hook",
                   "configuration": {"url": http.url("/capacity"), "secret": "capacity-secret-0123456"}}  # fmt: skip
        status, made = stack.request("POST", "/api/v1/monitoring/notifications/channels", channel, token)
        assert status == 201, made
        body = {"thresholdName": "storage early", "resourceType": "STORAGE", "thresholdPercentage": 0.5,
                "thresholdType": "CRITICAL", "alertEnabled": True, "notificationChannels": [made["channelId"]]}  # fmt: skip
        status, created = stack.request("POST", f"{C}/thresholds", body, token)
        assert status == 201 and created["success"], created
        tid = created["data"]["thresholdId"]
        status, refused = stack.request(
            "POST", f"{C}/thresholds", {**body, "thresholdPercentage": 101}, token
        )
        assert status == 422 and "thresholdPercentage" in str(refused), refused

        _capture(stack, token, iid)
        status, evaluated = stack.request("POST", f"{C}/thresholds/evaluate", {"targetId": iid}, token)
        assert status == 200, evaluated
        (mine,) = [e for e in evaluated["data"] if e["thresholdId"] == tid]
        assert mine["thresholdExceeded"] and mine["alertSeverity"] == "HIGH", mine
        hook = http.wait_for_request("/capacity", timeout=60)
        assert "storage early" in hook.raw.decode(), hook.raw[:300]

        status, _ = stack.request("PUT", f"{C}/thresholds/{tid}", {"thresholdPercentage": 99}, token)
        assert status == 200
        status, evaluated = stack.request("POST", f"{C}/thresholds/evaluate", {"targetId": iid}, token)
        (mine,) = [e for e in evaluated["data"] if e["thresholdId"] == tid]
        assert not mine["thresholdExceeded"], mine
        status, alerts = stack.request("GET", f"{C}/alerts?status=RESOLVED", token=token)
        (alert,) = [a for a in alerts["data"] if a["thresholdName"] == "storage early"]
        assert alert["resolutionTime"] is not None and alert["resourceType"] == "STORAGE", alert
        status, listed = stack.request("GET", f"{C}/thresholds?resourceType=STORAGE", token=token)
        (threshold,) = [t for t in listed["data"] if t["thresholdId"] == tid]
        assert threshold["triggerCount24h"] == 1 and threshold["effectiveness"] == 100.0, threshold
        assert threshold["lastTriggered"] is not None


def test_analysis_run_creates_the_default_thresholds(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    status, run = stack.request(
        "POST", f"{C}/analysis/run", {"createDefaultThresholds": True, "analysisDays": 1}, token
    )
    assert status == 200, run
    result = run["data"]
    # the eight defaults but STORAGE CRITICAL, which the test before made ("storage early")
    assert result["thresholdsCreated"] == 7 and result["resourcesAnalyzed"] >= 3, result
    assert result["patternsDetected"] == result["forecastsGenerated"] >= 1, result
    status, again = stack.request(
        "POST", f"{C}/analysis/run", {"createDefaultThresholds": True, "analysisDays": 1}, token
    )
    assert again["data"]["thresholdsCreated"] == 0, again
    status, listed = stack.request("GET", f"{C}/thresholds?thresholdType=WARNING", token=token)
    assert {t["resourceType"] for t in listed["data"]} >= {"STORAGE", "CONNECTIONS", "CPU", "MEMORY"}, listed


def test_dashboard_and_the_pdf_with_forecast_charts(stack: LocalStack, token: str, tmp_path: Path) -> None:
    status, board = stack.request("GET", f"{C}/dashboard", token=token)
    assert status == 200, board
    data = board["data"]
    assert data["summary"]["totalResources"] >= 3 and data["recentAlerts"], data
    assert any(t["resourceType"] == "STORAGE" and t["trend"] == "INCREASING" for t in data["growthTrends"]), (
        data
    )
    status, text = stack.request("GET", f"{C}/reports/export?reportType=FORECASTS&format=CSV", token=token)
    assert status == 200 and text.splitlines()[0].startswith(
        "targetId,resourceId,resourceType,patternType"
    ), text[:200]
    req = urllib.request.Request(f"{stack.url}{C}/reports/export?reportType=COMPREHENSIVE&format=PDF",
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
        pdf = resp.read()
        assert (
            resp.headers["Content-Type"] == "application/pdf"
            and "attachment" in resp.headers["Content-Disposition"]
        )
    (tmp_path / "capacity.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(tmp_path / "capacity.pdf"),
                    str(tmp_path / "page")], check=True)  # fmt: skip
    assert list(tmp_path.glob("page*.png"))


def test_system_capacity_shows_the_host_the_servers_and_the_projection(
    stack: LocalStack, instance: dict[str, Any]
) -> None:
    admin = stack.token("admin", None)
    status, body = stack.request("GET", "/api/v1/system/capacity", token=admin)
    assert status == 200, body
    current = body["current"]
    assert current["disk"]["total"] > 0 and 0 <= current["cpu"]["utilizationPercent"] <= 100, current
    assert current["memory"]["used"] > 0 and current["connections"]["total"] > 0, current
    assert current["disk"]["trend"] == "INCREASING", current  # the growing database's forecast
    assert any(s["targetId"] == instance["id"] and s["resourceType"] == "STORAGE" for s in body["servers"])
    assert any(p["resourceType"] == "STORAGE" and p["priority"] == "URGENT" for p in body["projected"]), body[
        "projected"
    ]
    assert any(r["resourceId"] == instance["id"] for r in body["recommendations"]), body["recommendations"]


def _events(ws: Any, wanted: str, timeout: float = 30) -> dict[str, Any]:
    """The next event named `wanted` on the connection (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted} within {timeout} s"
        event = json.loads(ws.recv(timeout=left))
        if event["event"] == wanted:
            return event


def test_capacity_events_reach_their_tenant_only_and_a_spike_is_analyzed_at_once(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    other = stack.token("operator", "globex")
    with pytest.raises(InvalidStatus) as refused:
        connect(stack.ws_url, open_timeout=10).close()
    assert refused.value.response.status_code == 401
    assert b"missing token" in refused.value.response.body
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{stack.ws_url}/?token={token}&events=capacity:nonsense", open_timeout=10).close()
    assert refused.value.response.status_code == 422
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{stack.ws_url}/?token=not-a-jwt", open_timeout=10).close()
    assert refused.value.response.status_code == 401

    with (
        connect(
            stack.ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10
        ) as mine,
        connect(f"{stack.ws_url}/?token={other}", open_timeout=10) as theirs,
    ):
        mine.send(json.dumps({"action": "ping"}))
        assert json.loads(mine.recv(timeout=10))["event"] == "pong"
        body = {"thresholdName": "storage live", "resourceType": "STORAGE", "thresholdPercentage": 0.5,
                "thresholdType": "WARNING", "alertEnabled": True}  # fmt: skip
        status, created = stack.request("POST", f"{C}/thresholds", body, token)
        assert status == 201, created
        status, _ = stack.request("POST", f"{C}/thresholds/evaluate", {"targetId": iid}, token)
        assert status == 200
        exceeded = _events(mine, "capacity:threshold_exceeded")
        assert exceeded["tenantId"] == "acme" and exceeded["data"]["resourceType"] == "STORAGE", exceeded
        assert exceeded["data"]["threshold"] == 0.5 and exceeded["data"]["currentUtilization"] > 0.5

        # A spike: the database grows well over 5 % between two captures.
        _capture(stack, token, iid)
        _grow(instance["credentials"]["uri"], 20000)
        _capture(stack, token, iid)
        spike = _events(mine, "capacity:utilization_spike")
        assert spike["data"]["resourceId"] == iid and spike["data"]["growthRate"] > 5, spike
        assert spike["data"]["resourceType"] in ("STORAGE", "TENANT_STORAGE"), spike
        updated = _events(mine, "capacity:forecast_updated")
        assert updated["data"]["resourcesAnalyzed"] >= 1, updated
        with pytest.raises(TimeoutError):  # nothing of acme's reached globex
            theirs.recv(timeout=2)
