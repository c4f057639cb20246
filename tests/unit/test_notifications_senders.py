"""The senders (pgfleet.adapters.notify) against real local receivers: an SMTP server and an
HTTP server on 127.0.0.1 (tests/receivers.py). SMS goes through SNS: see the e2e test."""

from __future__ import annotations

import pytest

from pgfleet.adapters.notify import ChannelNotifier
from pgfleet.ports.notifier import DeliveryFailed, Message
from tests.receivers import closed_port, http_receiver, smtp_receiver

ALERT = {
    "id": "alert-0123456789ab", "tenant_id": "acme", "parent_id": "pgi-0123456789ab", "alert_name": "cpu",
    "severity": "CRITICAL", "category": "PERFORMANCE", "metric_value": 97.0, "threshold": 90,
    "resource_type": "instance",
}  # fmt: skip
FIRED = Message(
    title="[CRITICAL] cpu", text="cpu above 90%", severity="CRITICAL", event="triggered", alert=ALERT
)
CLEARED = Message(
    title="[CRITICAL] cpu resolved", text="cpu back", severity="CRITICAL", event="resolved", alert=ALERT
)


def test_email_over_smtp_with_login() -> None:
    with smtp_receiver(credentials=("ops", "s3cret-pw")) as smtp:
        config = {"host": smtp.host, "port": smtp.port, "tls": "none", "username": "ops", "password": "s3cret-pw",
                  "from_address": "pgfleet@example.com", "to": ["a@example.com", "b@example.com"]}  # fmt: skip
        ChannelNotifier().send("EMAIL", config, FIRED)
        mail = smtp.wait_for_message()
        assert mail.login == "ops" and mail.rcpt_tos == ["a@example.com", "b@example.com"]
        assert mail.subject == "[CRITICAL] cpu" and "cpu above 90%" in mail.body
        with pytest.raises(DeliveryFailed, match="login refused"):
            ChannelNotifier().send("EMAIL", {**config, "password": "wrong"}, FIRED)


def test_email_to_a_closed_port_fails_with_the_reason() -> None:
    config = {
        "host": "127.0.0.1",
        "port": closed_port(),
        "from_address": "a@example.com",
        "to": ["b@example.com"],
    }
    with pytest.raises(DeliveryFailed, match="could not connect"):
        ChannelNotifier().send("EMAIL", config, FIRED)


def test_slack_block_kit() -> None:
    with http_receiver() as http:
        ChannelNotifier().send("SLACK", {"webhook_url": http.url("/services/T/B/tok")}, FIRED)
        body = http.wait_for_request("/services/T/B/tok").json
    assert body["text"].startswith("[CRITICAL] cpu")
    header, section, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[CRITICAL] cpu", "emoji": True},
    }
    assert (
        section["type"] == "section"
        and {"type": "mrkdwn", "text": "*Severity*\nCRITICAL"} in section["fields"]
    )
    assert context["type"] == "context" and "alert-0123456789ab" in context["elements"][0]["text"]


def test_webhook_is_signed() -> None:
    secret = "hook-secret-0123456789abcdef"
    with http_receiver() as http:
        ChannelNotifier().send("WEBHOOK", {"url": http.url("/hook"), "secret": secret, "headers": {"X-Team": "db"}},
                               FIRED)  # fmt: skip
        request = http.wait_for_request("/hook")
    assert http.signature_ok(request, secret) and not http.signature_ok(request, "another secret")
    assert request.headers["x-team"] == "db" and request.headers["content-type"] == "application/json"
    assert request.headers["x-pgfleet-timestamp"] == str(request.json["timestamp"])
    assert request.json["event"] == "triggered" and request.json["alert"]["id"] == ALERT["id"]


def test_webhook_error_status_is_a_failure() -> None:
    with http_receiver() as http:
        http.statuses["/hook"] = 500
        with pytest.raises(DeliveryFailed, match="HTTP 500"):
            ChannelNotifier().send("WEBHOOK", {"url": http.url("/hook"), "secret": "x" * 16}, FIRED)


def test_pagerduty_events_v2_trigger_and_resolve() -> None:
    with http_receiver() as http:
        config = {"routing_key": "R0UTINGKEY", "events_url": http.url("/v2/enqueue")}
        ChannelNotifier().send("PAGERDUTY", config, FIRED)
        ChannelNotifier().send("PAGERDUTY", config, CLEARED)
        trigger = http.wait_for_request("/v2/enqueue").json
        resolve = http.wait_for_request("/v2/enqueue", count=2).json
    assert trigger["event_action"] == "trigger" and trigger["routing_key"] == "R0UTINGKEY"
    assert trigger["dedup_key"] == ALERT["id"]
    payload = trigger["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "pgi-0123456789ab"
    assert {"summary", "component", "group", "class", "custom_details"} <= set(payload)
    assert resolve == {"event_action": "resolve", "dedup_key": ALERT["id"], "routing_key": "R0UTINGKEY"}


def test_a_connection_refused_names_no_secret_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/services/T/B/very-secret-token"
    with pytest.raises(DeliveryFailed) as failure:
        ChannelNotifier().send("SLACK", {"webhook_url": url}, FIRED)
    assert "could not connect" in str(failure.value) and "very-secret-token" not in str(failure.value)
