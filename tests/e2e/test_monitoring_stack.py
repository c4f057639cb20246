"""Issue 14's "done when", as a new user on the real local stack: a webhook, an SMTP and a
PagerDuty channel (real local receivers); `kill -9` of a server's postmaster raises a CRITICAL
server_down alert, opens an incident, and the webhook and the SMTP server receive it;
reconcile heals the server, the alert resolves by itself and PagerDuty gets a `resolve` with
the alert id as its dedup_key; the incident's timeline tells the story and it can be resolved
once its alerts are."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import LocalStack, running_stack, wait_for
from tests.receivers import HttpReceiver, SmtpReceiver, http_receiver, smtp_receiver

MON = "/api/v1/monitoring"
SECRET = "whsec-0123456789abcdef"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-monitoring-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[SmtpReceiver, HttpReceiver]]:
    with smtp_receiver() as smtp, http_receiver() as http:
        yield smtp, http


@pytest.fixture(scope="module")
def channels(stack: LocalStack, token: str, receivers: tuple[SmtpReceiver, HttpReceiver]) -> dict[str, str]:
    smtp, http = receivers
    specs = {
        "WEBHOOK": {"url": http.url("/hook"), "secret": SECRET},
        "EMAIL": {"host": smtp.host, "port": smtp.port, "tls": "none", "from": "pgfleet@example.com",
                  "to": ["oncall@example.com"]},
        "PAGERDUTY": {"routingKey": "R0UT1NGKEY", "eventsUrl": http.url("/v2/enqueue")},
    }  # fmt: skip
    ids = {}
    for kind, configuration in specs.items():
        body = {"type": kind, "name": f"oncall {kind.lower()}", "configuration": configuration}
        if kind == "EMAIL":
            body["routing"] = {"severities": ["HIGH", "CRITICAL"]}
        status, channel = stack.request("POST", f"{MON}/notifications/channels", body, token)
        assert status == 201, channel
        ids[kind] = channel["channelId"]
    return ids


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "watched-db"}, token)
    assert status == 202, body
    stack.wait_created(body["operation_id"], token)
    # Its first backup done: a kill during it would fail it too (and rightly raise backup_failed).
    stack.wait_first_backup(f"/api/v1/postgres/single/{body['id']}", token)
    return body


def _postmaster_pid(stack: LocalStack, iid: str) -> int:
    pidfile = stack.home / "data" / "servers" / iid / "data" / "postmaster.pid"
    return int(pidfile.read_text().splitlines()[0])


def _alert_id(request_json: dict[str, Any]) -> str:
    alert = request_json["alert"]
    return str(alert.get("alertId") or alert.get("id"))


def _pagerduty(http: HttpReceiver, alert_id: str, action: str) -> Any:
    """The PagerDuty event of this alert (other alerts may fire meanwhile: a first backup cut
    short by the kill fails, and says so)."""
    found = wait_for(
        lambda: [r for r in http.requests_to("/v2/enqueue")
                 if r.json["dedup_key"] == alert_id and r.json["event_action"] == action],
        timeout=60, what=f"PagerDuty to get {action} for {alert_id}",
    )  # fmt: skip
    return found[0]


def test_kill_raises_alert_incident_and_notifications_then_all_resolves(
    stack: LocalStack, token: str, receivers: tuple[SmtpReceiver, HttpReceiver], channels: dict[str, str],
    instance: dict[str, Any],
) -> None:  # fmt: skip
    smtp, http = receivers
    iid = instance["id"]
    os.kill(_postmaster_pid(stack, iid), signal.SIGKILL)
    killed = time.monotonic()

    hook = wait_for(
        lambda: next((r for r in http.requests_to("/hook")
                      if r.json["event"] == "triggered" and r.json["alert"].get("alert_name") == "server_down"), None),
        timeout=150, interval=0.2, what="the webhook to receive the server_down alert",
    )  # fmt: skip
    print(f"kill -9 -> webhook received the alert: {time.monotonic() - killed:.1f} s")
    assert http.signature_ok(hook, SECRET)
    assert hook.json["event"] == "triggered" and hook.json["severity"] == "CRITICAL"
    alert_id = _alert_id(hook.json)

    status, alert_list = stack.request("GET", f"{MON}/alerts?severity=CRITICAL", token=token)
    assert status == 200
    (alert,) = [a for a in alert_list["alerts"] if a["alertId"] == alert_id]
    assert alert["alertName"] == "server_down" and alert["resourceId"] == iid
    assert alert_list["summary"]["critical"] >= 1

    status, incidents = stack.request("GET", f"{MON}/incidents", token=token)
    assert status == 200, incidents
    (incident,) = [i for i in incidents["incidents"] if alert_id in i["relatedAlerts"]]
    assert (
        incident["status"] == "OPEN"
        and incident["severity"] == "CRITICAL"
        and iid in incident["affectedServices"]
    )

    mail = wait_for(
        lambda: next((m for m in smtp.messages if "server_down" in m.subject + m.body), None),
        timeout=60, what="the server_down mail",
    )  # fmt: skip
    assert mail.rcpt_tos == ["oncall@example.com"]

    trigger = _pagerduty(http, alert_id, "trigger")
    assert trigger.json["routing_key"] == "R0UT1NGKEY"

    # While its alert is open, the incident cannot be resolved.
    incident_id = incident["incidentId"]
    update = f"{MON}/incidents/{incident_id}/update"
    status, body = stack.request("POST", update, {"actionType": "STATUS_CHANGE", "status": "RESOLVED",
                                                  "note": "looks fine"}, token)  # fmt: skip
    assert status == 409, body
    status, body = stack.request("POST", update, {"actionType": "ASSIGNMENT", "assignTo": "dba-oncall",
                                                  "note": "taking it"}, token)  # fmt: skip
    assert status == 200 and body["assignedTo"] == "dba-oncall", body

    # Reconcile restarted the server; the next capture finds it up: the alert resolves itself.
    def resolved() -> dict[str, Any] | None:
        _, page = stack.request("GET", f"{MON}/alerts?status=RESOLVED", token=token)
        return next((a for a in page["alerts"] if a["alertId"] == alert_id), None)

    done = wait_for(resolved, timeout=180, interval=2, what="the server_down alert to resolve by itself")
    print(f"kill -9 -> alert resolved by itself: {time.monotonic() - killed:.1f} s")
    assert done["resolvedAt"] and done["resolutionNote"] == "condition cleared"
    _pagerduty(http, alert_id, "resolve")
    wait_for(
        lambda: [r for r in http.requests_to("/hook") if r.json["event"] == "resolved" and _alert_id(r.json) == alert_id],
        timeout=60, what="the webhook to hear the alert resolved",
    )  # fmt: skip

    # Other alerts of the server may have joined (a HIGH one: the first backup, cut short by the
    # kill, failed): the incident resolves once they are resolved too, here by hand.
    status, body = stack.request("POST", update, {"actionType": "STATUS_CHANGE", "status": "RESOLVED",
                                                  "note": "reconcile restarted it"}, token)  # fmt: skip
    if status == 409:
        for other in body["error"]["details"]["openAlerts"]:
            assert other != alert_id
            got = stack.request("POST", f"{MON}/alerts/{other}/resolve", {"resolutionNote": "seen"}, token)[1]
            print(f"also in the incident: {got['alertName']} ({got['severity']}): {got['description']}")
        status, body = stack.request("POST", update, {"actionType": "STATUS_CHANGE", "status": "RESOLVED",
                                                      "note": "reconcile restarted it"}, token)  # fmt: skip
    assert status == 200 and body["status"] == "RESOLVED" and body["resolvedAt"], body
    kinds = [event["actionType"] for event in body["timeline"]]
    assert kinds.count("STATUS_CHANGE") >= 1 and "ASSIGNMENT" in kinds and len(body["timeline"]) >= 4, body
    # Only one alert for the whole outage: never one per sample.
    _, everything = stack.request("GET", f"{MON}/alerts?timeRange=1h&pageSize=100", token=token)
    assert [a["alertName"] for a in everything["alerts"] if a["resourceId"] == iid].count("server_down") == 1


def test_notification_failures_are_recorded_and_never_block(stack: LocalStack, token: str) -> None:
    """A channel that cannot be reached: the test send says FAILED with the reason."""
    body = {
        "type": "WEBHOOK",
        "name": "nowhere",
        "configuration": {"url": "http://127.0.0.1:9/x", "secret": SECRET},
    }
    status, channel = stack.request("POST", f"{MON}/notifications/channels", body, token)
    assert status == 201, channel
    status, tested = stack.request(
        "POST", f"{MON}/notifications/test", {"channelId": channel["channelId"]}, token
    )
    assert status == 200 and tested["testStatus"] == "FAILED" and tested["lastTestError"], tested
    assert SECRET not in str(tested)
    assert stack.request("DELETE", f"{MON}/notifications/channels/{channel['channelId']}", token=token)[
        0
    ] in (200, 204)
