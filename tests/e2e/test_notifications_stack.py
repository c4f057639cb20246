"""Notification channels through the real local stack: EMAIL to a local SMTP server, SLACK,
WEBHOOK and PAGERDUTY to a local HTTP server, SMS through moto's SNS. Each channel's test sends
a real message; secrets never come back; a channel to a closed port fails its test with the
reason. And the alert path: `notify` queues deliveries that the stack's worker sends."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.terraform_helpers import PROVIDER_BLOCK, terraform_for
from tests.helpers import LocalStack, running_stack, wait_for
from tests.receivers import HttpReceiver, SmtpReceiver, closed_port, http_receiver, smtp_receiver

CHANNELS = "/api/v1/monitoring/notifications/channels"
TEST = "/api/v1/monitoring/notifications/test"
SMTP_PASSWORD = "smtp-e2e-pa55word"
SLACK_TOKEN = "slack-e2e-token-0123456789"
WEBHOOK_SECRET = "webhook-e2e-secret-0123456789"
ROUTING_KEY = "pagerdutyE2Ekey0123456789abcdef"
SECRETS = (SMTP_PASSWORD, SLACK_TOKEN, WEBHOOK_SECRET, ROUTING_KEY)
PHONE = "+14155550123"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-notify-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpReceiver]:
    with smtp_receiver(credentials=("alerts", SMTP_PASSWORD)) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def http() -> Iterator[HttpReceiver]:
    with http_receiver() as receiver:
        yield receiver


def bodies(smtp: SmtpReceiver, http: HttpReceiver) -> dict[str, dict[str, Any]]:
    return {
        "EMAIL": {"type": "EMAIL", "name": "dba mail", "configuration": {
            "host": smtp.host, "port": smtp.port, "tls": "none", "username": "alerts", "password": SMTP_PASSWORD,
            "from": "pgfleet@example.com", "to": ["dba@example.com"]}},
        "SLACK": {"type": "SLACK", "name": "dba slack",
                  "configuration": {"webhookUrl": http.url(f"/services/T1/B1/{SLACK_TOKEN}")}},
        "WEBHOOK": {"type": "WEBHOOK", "name": "dba hook", "configuration": {
            "url": http.url("/hook"), "secret": WEBHOOK_SECRET, "headers": {"X-Team": "dba"}}},
        "PAGERDUTY": {"type": "PAGERDUTY", "name": "dba pager",
                      "configuration": {"routingKey": ROUTING_KEY, "eventsUrl": http.url("/v2/enqueue")}},
        "SMS": {"type": "SMS", "name": "dba phone", "configuration": {"phoneNumber": PHONE}},
    }  # fmt: skip


def assert_no_secret(value: Any) -> None:
    text = json.dumps(value)
    for secret in SECRETS:
        assert secret not in text


def sms_sent(stack: LocalStack) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{stack.aws_port}/moto-api/data.json"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
        data = json.loads(resp.read())
    return list(data.get("sns", {}).get("SMS", []))


@pytest.fixture(scope="module")
def channels(
    stack: LocalStack, token: str, smtp: SmtpReceiver, http: HttpReceiver
) -> dict[str, dict[str, Any]]:
    created = {}
    for kind, body in bodies(smtp, http).items():
        status, channel = stack.request("POST", CHANNELS, body, token)
        assert status == 201, channel
        assert channel["testStatus"] == "PENDING"
        assert_no_secret(channel)
        created[kind] = channel
    return created


def test_each_channel_test_sends_a_real_message(
    stack: LocalStack, token: str, smtp: SmtpReceiver, http: HttpReceiver, channels: dict[str, dict[str, Any]]
) -> None:
    outcomes = {}
    for kind, channel in channels.items():
        status, tested = stack.request("POST", TEST, {"channelId": channel["channelId"],
                                                      "testMessage": f"e2e test of {kind}"}, token)  # fmt: skip
        assert status == 200, tested
        outcomes[kind] = tested
        assert tested["testStatus"] == "PASSED", (kind, tested["lastTestError"])
        assert tested["lastTestAt"] and tested["lastTestError"] is None
        assert_no_secret(tested)

    mail = smtp.wait_for_message()
    assert mail.login == "alerts" and mail.rcpt_tos == ["dba@example.com"]
    assert "e2e test of EMAIL" in mail.body and mail.subject.startswith("pgfleet test")

    slack = http.wait_for_request(f"/services/T1/B1/{SLACK_TOKEN}").json
    assert [b["type"] for b in slack["blocks"]] == ["header", "section", "context"]
    assert "e2e test of SLACK" in slack["text"]

    hook = http.wait_for_request("/hook")
    assert http.signature_ok(hook, WEBHOOK_SECRET) and hook.headers["x-team"] == "dba"
    assert hook.json["text"] == "e2e test of WEBHOOK" and hook.json["event"] == "test"

    trigger = http.wait_for_request("/v2/enqueue").json
    resolve = http.wait_for_request("/v2/enqueue", count=2).json
    assert trigger["routing_key"] == ROUTING_KEY and trigger["event_action"] == "trigger"
    assert (
        trigger["payload"]["severity"] == "info" and "e2e test of PAGERDUTY" in trigger["payload"]["summary"]
    )
    assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == trigger["dedup_key"]

    sent = wait_for(
        lambda: [m for m in sms_sent(stack) if m["phone_number"] == PHONE], 10, what="the SMS in moto"
    )
    assert "e2e test of SMS" in sent[0]["message"]

    status, listed = stack.request("GET", CHANNELS, None, token)
    assert status == 200 and {c["testStatus"] for c in listed["channels"]} == {"PASSED"}
    assert_no_secret(listed)
    by_id = {c["channelId"]: c for c in listed["channels"]}
    assert by_id[channels["SLACK"]["channelId"]]["configuration"]["webhookUrl"] == "********"
    assert by_id[channels["EMAIL"]["channelId"]]["configuration"]["password"] == "********"
    assert by_id[channels["PAGERDUTY"]["channelId"]]["configuration"]["routingKey"] == "********"
    assert by_id[channels["WEBHOOK"]["channelId"]]["configuration"]["secret"] == "********"


def test_put_keeps_masked_secrets_and_delete_removes(
    stack: LocalStack, token: str, http: HttpReceiver, channels: dict[str, dict[str, Any]]
) -> None:
    hook = channels["WEBHOOK"]
    path = f"{CHANNELS}/{hook['channelId']}"
    _, current = stack.request("GET", path, None, token)
    configuration = {**current["configuration"], "url": http.url("/hook2")}
    status, updated = stack.request("PUT", path, {"name": "dba hook 2", "configuration": configuration,
                                                  "routing": {"severities": ["HIGH", "CRITICAL"]}}, token)  # fmt: skip
    assert status == 200, updated
    assert updated["name"] == "dba hook 2" and updated["testStatus"] == "PENDING"
    assert updated["routing"]["severities"] == ["HIGH", "CRITICAL"]
    status, tested = stack.request("POST", TEST, {"channelId": hook["channelId"]}, token)
    assert tested["testStatus"] == "PASSED", tested
    assert http.signature_ok(http.wait_for_request("/hook2"), WEBHOOK_SECRET)  # the secret was kept

    _, viewer_list = stack.request("GET", CHANNELS, None, stack.token("viewer", "acme"))
    assert len(viewer_list["channels"]) == 5
    assert stack.request("DELETE", path, None, stack.token("viewer", "acme"))[0] == 403
    assert stack.request("GET", path, None, stack.token("operator", "globex"))[0] == 404

    status, sms = stack.request("POST", CHANNELS, bodies_sms(), token)
    assert status == 201
    status, answer = stack.request("DELETE", f"{CHANNELS}/{sms['channelId']}", None, token)
    assert status == 200 and answer["deleted"] is True
    assert stack.request("GET", f"{CHANNELS}/{sms['channelId']}", None, token)[0] == 404


def bodies_sms() -> dict[str, Any]:
    return {"type": "SMS", "name": "spare phone", "configuration": {"phoneNumber": "+14155550199"}}


@pytest.mark.parametrize(
    "body",
    [
        {"type": "FAX", "name": "x", "configuration": {}},
        {"type": "SMS", "name": "x", "configuration": {"phoneNumber": "555-0100"}},
        {"type": "WEBHOOK", "name": "x", "configuration": {"url": "not a url", "secret": WEBHOOK_SECRET}},
        {
            "type": "EMAIL",
            "name": "x",
            "configuration": {"host": "h", "from": "nobody", "to": ["a@example.com"]},
        },
        {
            "type": "EMAIL",
            "name": "x",
            "configuration": {"provider": "ses", "from": "a@example.com", "to": ["b@example.com"]},
        },  # fmt: skip
    ],
)
def test_bad_input_is_422_and_creates_nothing(stack: LocalStack, token: str, body: dict[str, Any]) -> None:
    _, before = stack.request("GET", CHANNELS, None, token)
    status, answer = stack.request("POST", CHANNELS, body, token)
    assert status == 422, answer
    assert answer["error"]["code"] == "validation_error"
    _, after = stack.request("GET", CHANNELS, None, token)
    assert len(after["channels"]) == len(before["channels"])


def test_a_closed_port_fails_the_test_with_the_reason(stack: LocalStack, token: str) -> None:
    body = {
        "type": "WEBHOOK",
        "name": "dead hook",
        "configuration": {"url": f"http://127.0.0.1:{closed_port()}/hook", "secret": WEBHOOK_SECRET},
    }
    status, channel = stack.request("POST", CHANNELS, body, token)
    assert status == 201
    status, tested = stack.request("POST", TEST, {"channelId": channel["channelId"]}, token)
    assert status == 200 and tested["testStatus"] == "FAILED"
    assert "could not connect" in tested["lastTestError"] and "refused" in tested["lastTestError"].lower()
    _, got = stack.request("GET", f"{CHANNELS}/{channel['channelId']}", None, token)
    assert got["testStatus"] == "FAILED" and got["lastTestError"] == tested["lastTestError"]
    stack.request("DELETE", f"{CHANNELS}/{channel['channelId']}", None, token)


NOTIFY = textwrap.dedent(
    """
    import json, sys
    from pgfleet.core.context import provide
    from pgfleet.wiring import dependencies
    from pgfleet.domains import notifications
    provide(dependencies)
    ports = dependencies()
    command, alert = json.loads(sys.argv[1])
    if command == "notify":
        if ports.store.get("alert", alert["id"]) is None:
            ports.store.create("alert", alert)
        print(json.dumps(notifications.notify(ports, alert, alert["event"])))
    else:
        print(json.dumps({"deliveries": notifications.deliveries_of(ports, alert["id"]),
                          "alert": ports.store.get("alert", alert["id"])}))
    """
)


def in_stack(stack: LocalStack, command: str, alert: dict[str, Any]) -> Any:
    """Run `notify` (or read the deliveries) as the stack's own processes do: its env, its ports."""
    proc = subprocess.run([sys.executable, "-c", NOTIFY, json.dumps([command, alert])], env=stack.env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_alert_reaches_its_channels_through_the_worker(
    stack: LocalStack, token: str, http: HttpReceiver, channels: dict[str, dict[str, Any]]
) -> None:
    dead = {
        "type": "WEBHOOK",
        "name": "dead hook 2",
        "routing": {"severities": ["CRITICAL"]},
        "configuration": {"url": f"http://127.0.0.1:{closed_port()}/hook", "secret": WEBHOOK_SECRET},
    }
    status, dead_channel = stack.request("POST", CHANNELS, dead, token)
    assert status == 201
    alert = {
        "id": "alert-00e2e0000001", "tenant_id": "acme", "parent_id": "pgi-00e2e0000001", "alert_name": "cpu",
        "severity": "CRITICAL", "status": "ACTIVE", "category": "PERFORMANCE", "description": "cpu above 95%",
        "triggered_at": "2026-01-01T00:00:00Z", "created_at": "2026-01-01T00:00:00Z", "metric_value": 97.5,
        "threshold": 95, "resource_type": "instance", "event": "triggered",
    }  # fmt: skip
    hooks_before = len(http.requests_to("/hook2"))
    lines = in_stack(stack, "notify", alert)
    assert len(lines) == 6, lines  # 5 channels left (one was deleted) and the dead one; SMS included
    request = http.wait_for_request("/hook2", count=hooks_before + 1, timeout=30)
    assert http.signature_ok(request, WEBHOOK_SECRET)
    assert request.json["event"] == "triggered" and request.json["alert"]["id"] == alert["id"]
    assert request.json["delivery_id"].startswith("ntd-")
    assert request.headers["x-pgfleet-delivery"] == request.json["delivery_id"]

    def settled() -> Any:
        seen = in_stack(stack, "read", alert)
        failing = (seen["alert"] or {}).get("notification_failures") or []
        delivered = [d for d in seen["deliveries"] if d["status"] == "DELIVERED"]
        return seen if len(delivered) == 5 and failing else None

    seen = wait_for(settled, 40, interval=1, what="5 deliveries and the dead channel's failure")
    (failure,) = seen["alert"]["notification_failures"]
    assert failure["channel_id"] == dead_channel["channelId"] and failure["attempts"] >= 1
    assert "could not connect" in failure["error"]
    assert_no_secret(seen)


def test_terraform_manages_a_channel(
    stack: LocalStack, token: str, http: HttpReceiver, tmp_path: Path
) -> None:
    terraform = terraform_for(stack, token)
    config = PROVIDER_BLOCK + textwrap.dedent(
        f"""
        resource "pgfleet_notification_channel" "hook" {{
          type = "WEBHOOK"
          name = "tf hook"
          configuration = {{
            url     = "{http.url("/tf-hook")}"
            secret  = "{WEBHOOK_SECRET}"
            headers = {{ "X-Team" = "tf" }}
          }}
          routing = {{ severities = ["CRITICAL"] }}
        }}
        """
    )
    workdir = terraform.workdir(tmp_path / "tf", config)
    terraform.apply(workdir)
    values = terraform.state_values(workdir)["pgfleet_notification_channel.hook"]
    channel_id = values["id"]
    assert values["configuration"]["secret"] == WEBHOOK_SECRET and values["tenant_id"] == "acme"
    assert values["test_status"] == "PENDING"
    assert terraform.plan_is_empty(workdir)  # the masked secret the API shows is no change
    status, got = stack.request("GET", f"{CHANNELS}/{channel_id}", None, token)
    assert status == 200 and got["routing"]["severities"] == ["CRITICAL"]
    assert got["configuration"]["secret"] == "********"

    # In place: a new name and secret; the channel keeps its id and signs with the new secret.
    new_secret = "tf-rotated-secret-0123456789"
    (workdir / "main.tf").write_text(
        config.replace('"tf hook"', '"tf hook 2"').replace(WEBHOOK_SECRET, new_secret)
    )
    assert terraform.planned_actions(workdir)["pgfleet_notification_channel.hook"] == ["update"]
    terraform.apply(workdir)
    assert terraform.state_values(workdir)["pgfleet_notification_channel.hook"]["id"] == channel_id
    assert terraform.plan_is_empty(workdir)
    status, tested = stack.request("POST", TEST, {"channelId": channel_id}, token)
    assert tested["testStatus"] == "PASSED", tested
    assert http.signature_ok(http.wait_for_request("/tf-hook"), new_secret)

    # Import into another configuration: the secret is masked there until an apply sets it.
    imported = terraform.workdir(tmp_path / "import", config.replace('"hook"', '"adopted"'))
    terraform(imported, "import", "-no-color", "pgfleet_notification_channel.adopted", channel_id)
    assert terraform.planned_actions(imported)["pgfleet_notification_channel.adopted"] == ["update"]

    terraform(workdir, "destroy", "-auto-approve", "-no-color")
    assert stack.request("GET", f"{CHANNELS}/{channel_id}", None, token)[0] == 404


SES = textwrap.dedent(
    """
    from pgfleet.adapters.aws import client
    from pgfleet.adapters.notify import ChannelNotifier
    from pgfleet.ports.notifier import Message
    client("ses").verify_email_identity(EmailAddress="pgfleet@example.com")
    configuration = {"provider": "ses", "from_address": "pgfleet@example.com", "to": ["dba@example.com"]}
    print(ChannelNotifier().send("EMAIL", configuration, Message(title="ses title", text="ses body")))
    """
)


def test_the_ses_sender_sends_through_the_aws_endpoint(stack: LocalStack) -> None:
    # The API accepts provider ses only in AWS; its sender is the same code there, here against moto.
    proc = subprocess.run([sys.executable, "-c", SES], env=stack.env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0 and "via SES" in proc.stdout, proc.stderr
    url = f"http://127.0.0.1:{stack.aws_port}/moto-api/data.json"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
        sent = json.loads(resp.read()).get("ses", {}).get("Message", [])
    assert any(m["subject"] == "ses title" and m["destinations"]["ToAddresses"] == ["dba@example.com"]
               for m in sent), sent  # fmt: skip
