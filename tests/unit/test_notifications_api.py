"""The notification channels API through the api handler, with fake ports and a notifier that
records what it would send (the senders themselves: test_notifications_senders.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pgfleet.ports.notifier import DeliveryFailed, Message, Notifier

CHANNELS = "/api/v1/monitoring/notifications/channels"
TEST = "/api/v1/monitoring/notifications/test"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/slack-secret-token-1234"
WEBHOOK_SECRET = "whsec-0123456789abcdef-secret"
ROUTING_KEY = "pdroutingkey0123456789abcdefXYZ"
SMTP_PASSWORD = "smtp-pa55word-secret"
SECRETS = (SLACK_URL, "slack-secret-token", WEBHOOK_SECRET, ROUTING_KEY, SMTP_PASSWORD)


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], Message]] = []
        self.failure: str | None = None

    def send(self, channel_type: str, configuration: dict[str, Any], message: Message) -> str:
        if self.failure:
            raise DeliveryFailed(self.failure)
        self.sent.append((channel_type, configuration, message))
        return f"{channel_type} sent"


@pytest.fixture
def notifier(fake_ports) -> RecordingNotifier:  # type: ignore[no-untyped-def]
    fake_ports.notifier = RecordingNotifier()
    return fake_ports.notifier  # type: ignore[no-any-return]


def email(**extra: Any) -> dict[str, Any]:
    return {
        "type": "EMAIL", "name": "ops mail",
        "configuration": {"host": "smtp.example.com", "port": 587, "tls": "starttls", "username": "ops",
                          "password": SMTP_PASSWORD, "from": "pgfleet@example.com", "to": ["ops@example.com"]},
        **extra,
    }  # fmt: skip


def slack(**extra: Any) -> dict[str, Any]:
    return {"type": "SLACK", "name": "ops slack", "configuration": {"webhookUrl": SLACK_URL}, **extra}


def webhook(**extra: Any) -> dict[str, Any]:
    return {
        "type": "WEBHOOK", "name": "hook",
        "configuration": {"url": "http://127.0.0.1:9/hook", "secret": WEBHOOK_SECRET, "headers": {"X-Team": "db"}},
        **extra,
    }  # fmt: skip


def pagerduty(**extra: Any) -> dict[str, Any]:
    return {"type": "PAGERDUTY", "name": "pager", "configuration": {"routingKey": ROUTING_KEY}, **extra}


def sms(**extra: Any) -> dict[str, Any]:
    return {"type": "SMS", "name": "on call phone", "configuration": {"phoneNumber": "+14155550100"}, **extra}


def assert_no_secret(value: Any) -> None:
    text = json.dumps(value)
    for secret in SECRETS:
        assert secret not in text, f"secret {secret[:6]}... in {text}"


def test_create_each_type_masks_secrets_and_keeps_them_out_of_the_record(call, fake_ports, notifier) -> None:  # type: ignore[no-untyped-def]
    created = {}
    for body in (email(), slack(), webhook(), pagerduty(), sms()):
        status, channel = call("POST", CHANNELS, body)
        assert status == 201, channel
        assert channel["channelId"].startswith("nch-")
        assert channel["tenantId"] == "acme" and channel["testStatus"] == "PENDING" and channel["isEnabled"]
        assert channel["routing"] == {"severities": ["LOW", "MEDIUM", "HIGH", "CRITICAL"],
                                      "events": ["triggered", "resolved"]}  # fmt: skip
        assert_no_secret(channel)
        created[body["type"]] = channel
    assert created["SLACK"]["configuration"] == {"webhookUrl": "********"}
    assert created["EMAIL"]["configuration"]["password"] == "********"
    assert created["EMAIL"]["configuration"]["from"] == "pgfleet@example.com"
    assert created["WEBHOOK"]["configuration"]["secret"] == "********"
    assert created["WEBHOOK"]["configuration"]["headers"] == {"X-Team": "db"}
    assert created["PAGERDUTY"]["configuration"]["routingKey"] == "********"
    assert created["PAGERDUTY"]["configuration"] == {"routingKey": "********"}  # defaults are not echoed
    assert created["SMS"]["configuration"] == {"phoneNumber": "+14155550100"}

    status, listed = call("GET", CHANNELS)
    assert status == 200 and len(listed["channels"]) == 5
    assert_no_secret(listed)
    for channel in created.values():
        status, got = call("GET", f"{CHANNELS}/{channel['channelId']}")
        assert status == 200 and got == channel
    # The records hold no secret; Secrets Manager does.
    assert_no_secret(
        [r for (kind, _), r in fake_ports.store.records.items() if kind == "notification_channel"]
    )
    stored = json.loads(fake_ports.secrets.values[f"notifications/{created['SLACK']['channelId']}"])
    assert stored == {"webhook_url": SLACK_URL}


def test_no_secret_in_the_audit_trail(call, fake_ports, notifier) -> None:  # type: ignore[no-untyped-def]
    for body in (email(), slack(), webhook(), pagerduty()):
        assert call("POST", CHANNELS, body)[0] == 201
    events = [r for r in fake_ports.history.records.values() if r.stream == "audit"]
    assert any("notifications/channels" in repr(e) for e in events)
    assert_no_secret(repr(events))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**sms(), "type": "FAX"}, "type"),
        (sms(configuration={"phoneNumber": "4155550100"}), "configuration.phoneNumber"),
        (slack(configuration={"webhookUrl": "not a url"}), "configuration.webhookUrl"),
        (slack(configuration={}), "configuration.webhookUrl"),
        (webhook(configuration={"url": "ftp://x/y", "secret": WEBHOOK_SECRET}), "configuration.url"),
        (webhook(configuration={"url": "http://x/y", "secret": "short"}), "configuration.secret"),
        (
            webhook(
                configuration={
                    "url": "http://x/y",
                    "secret": WEBHOOK_SECRET,
                    "headers": {"X-Pgfleet-Signature": "forged"},
                }
            ),
            "configuration.headers",
        ),  # fmt: skip
        (
            email(configuration={"host": "h", "from": "not-an-address", "to": ["a@example.com"]}),
            "configuration.from",
        ),
        (email(configuration={"host": "h", "from": "a@example.com", "to": []}), "configuration.to"),
        (email(configuration={"host": "h", "from": "a@example.com", "to": ["x@"]}), "configuration.to.0"),
        (
            email(
                configuration={"host": "h", "tls": "maybe", "from": "a@example.com", "to": ["b@example.com"]}
            ),
            "configuration.tls",
        ),  # fmt: skip
        (email(configuration={"from": "a@example.com", "to": ["b@example.com"]}), "configuration"),
        (pagerduty(configuration={"routingKey": ROUTING_KEY, "color": "red"}), "configuration.color"),
        (sms(routing={"severities": ["URGENT"]}), "routing.severities.0"),
        (sms(routing={"events": []}), "routing.events"),
        ({**sms(), "name": ""}, "name"),
    ],
)
def test_bad_input_is_422_and_changes_nothing(call, fake_ports, notifier, body, field) -> None:  # type: ignore[no-untyped-def]
    status, answer = call("POST", CHANNELS, body)
    assert status == 422, answer
    assert answer["error"]["code"] == "validation_error"
    fields = [d["field"] for d in answer["error"]["details"]]
    assert any(f == field or f.startswith(field + ".") for f in fields), fields
    assert_no_secret(answer)
    assert not [k for k in fake_ports.store.records if k[0] == "notification_channel"]
    assert not fake_ports.secrets.values


def test_ses_is_refused_outside_aws(call, fake_ports, notifier) -> None:  # type: ignore[no-untyped-def]
    body = email(configuration={"provider": "ses", "from": "pgfleet@example.com", "to": ["ops@example.com"]})
    # FakePorts has no AWS endpoint: it stands for AWS, where SES is available.
    assert call("POST", CHANNELS, body)[0] == 201
    import dataclasses

    fake_ports.settings = dataclasses.replace(fake_ports.settings, aws_endpoint_url="http://127.0.0.1:4566")
    status, answer = call("POST", CHANNELS, body)
    assert status == 422 and answer["error"]["details"][0]["field"] == "configuration.provider"


def test_put_with_masked_secret_keeps_it_and_changes_the_rest(call, fake_ports, notifier) -> None:  # type: ignore[no-untyped-def]
    _, channel = call("POST", CHANNELS, webhook())
    cid = channel["channelId"]
    changed = {**channel["configuration"], "url": "http://127.0.0.1:9/other"}
    status, updated = call("PUT", f"{CHANNELS}/{cid}", {"name": "renamed", "configuration": changed,
                                                          "routing": {"severities": ["CRITICAL"]}})  # fmt: skip
    assert status == 200, updated
    assert updated["name"] == "renamed" and updated["configuration"]["url"] == "http://127.0.0.1:9/other"
    assert updated["configuration"]["secret"] == "********"
    assert updated["routing"] == {"severities": ["CRITICAL"], "events": ["triggered", "resolved"]}
    assert call("POST", TEST, {"channelId": cid})[1]["testStatus"] == "PASSED"
    assert notifier.sent[-1][1]["secret"] == WEBHOOK_SECRET
    # A new secret replaces it; a type change is refused.
    new_secret = "another-secret-0123456789"
    status, _ = call("PUT", f"{CHANNELS}/{cid}", {"configuration": {**changed, "secret": new_secret}})
    assert status == 200
    call("POST", TEST, {"channelId": cid})
    assert notifier.sent[-1][1]["secret"] == new_secret
    status, answer = call("PUT", f"{CHANNELS}/{cid}", {"type": "SLACK"})
    assert status == 422
    status, answer = call("PUT", f"{CHANNELS}/{cid}", {"configuration": {"url": "nope"}})
    assert status == 422
    assert call("GET", f"{CHANNELS}/{cid}")[1]["configuration"]["url"] == "http://127.0.0.1:9/other"


def test_masked_secret_on_create_is_refused(call, notifier) -> None:  # type: ignore[no-untyped-def]
    status, answer = call("POST", CHANNELS, slack(configuration={"webhookUrl": "********"}))
    assert status == 422, answer


def test_delete_removes_the_channel_and_its_secret(call, fake_ports, notifier) -> None:  # type: ignore[no-untyped-def]
    _, channel = call("POST", CHANNELS, pagerduty())
    cid = channel["channelId"]
    status, answer = call("DELETE", f"{CHANNELS}/{cid}")
    assert status == 200 and answer == {"channelId": cid, "deleted": True}
    assert call("GET", f"{CHANNELS}/{cid}")[0] == 404
    assert f"notifications/{cid}" not in fake_ports.secrets.values
    assert call("DELETE", f"{CHANNELS}/{cid}")[0] == 404


def test_test_sends_now_and_records_the_outcome(call, notifier) -> None:  # type: ignore[no-untyped-def]
    _, channel = call("POST", CHANNELS, slack())
    status, tested = call(
        "POST", TEST, {"channelId": channel["channelId"], "testMessage": "hello from the test"}
    )
    assert status == 200 and tested["testStatus"] == "PASSED" and tested["lastTestError"] is None
    assert tested["lastTestAt"]
    channel_type, configuration, message = notifier.sent[-1]
    assert channel_type == "SLACK" and configuration["webhook_url"] == SLACK_URL
    assert message.text == "hello from the test" and message.event == "test"
    notifier.failure = "could not connect: Connection refused"
    status, tested = call("POST", TEST, {"channelId": channel["channelId"]})
    assert status == 200 and tested["testStatus"] == "FAILED"
    assert tested["lastTestError"] == "could not connect: Connection refused"
    assert call("GET", CHANNELS)[1]["channels"][0]["testStatus"] == "FAILED"


def test_permissions(call, notifier) -> None:  # type: ignore[no-untyped-def]
    _, channel = call("POST", CHANNELS, sms())
    cid = channel["channelId"]
    assert call("GET", CHANNELS, role="viewer")[0] == 200
    assert call("GET", f"{CHANNELS}/{cid}", role="viewer")[0] == 200
    assert call("POST", CHANNELS, sms(), role="viewer")[0] == 403
    assert call("PUT", f"{CHANNELS}/{cid}", {"name": "x"}, role="viewer")[0] == 403
    assert call("DELETE", f"{CHANNELS}/{cid}", role="viewer")[0] == 403
    assert call("POST", TEST, {"channelId": cid}, role="viewer")[0] == 403
    assert call("GET", CHANNELS, role=None)[0] == 401
    assert call("GET", CHANNELS, role="compliance_officer")[0] == 403


def test_tenants_see_only_their_channels(call, notifier) -> None:  # type: ignore[no-untyped-def]
    _, acme = call("POST", CHANNELS, sms())
    _, globex = call("POST", CHANNELS, sms(name="globex phone"), tenant="globex")
    platform_status, platform = call(
        "POST", CHANNELS, sms(tenantId="*", name="noc"), role="admin", tenant=None
    )
    assert platform_status == 201 and platform["tenantId"] == "*"
    status, for_tenant = call("POST", CHANNELS, sms(tenantId="initech"), role="admin", tenant=None)
    assert status == 201 and for_tenant["tenantId"] == "initech"
    # A tenant token cannot name another tenant, nor the platform.
    assert call("POST", CHANNELS, sms(tenantId="globex"))[0] == 404
    assert call("POST", CHANNELS, sms(tenantId="*"))[0] == 404
    assert [c["channelId"] for c in call("GET", CHANNELS)[1]["channels"]] == [acme["channelId"]]
    for path in (
        f"{CHANNELS}/{globex['channelId']}", f"{CHANNELS}/{platform['channelId']}",
    ):  # fmt: skip
        assert call("GET", path)[0] == 404
        assert call("PUT", path, {"name": "mine"})[0] == 404
        assert call("DELETE", path)[0] == 404
    assert call("POST", TEST, {"channelId": globex["channelId"]})[0] == 404
    assert call("GET", f"{CHANNELS}/nch-000000000000")[0] == 404
    assert call("GET", f"{CHANNELS}/not-an-id")[0] == 404
    # The platform sees every tenant's, or one tenant's with tenantId.
    everything = call("GET", CHANNELS, role="admin", tenant=None)[1]["channels"]
    assert len(everything) == 4
    only = call("GET", f"{CHANNELS}?tenantId=globex", role="admin", tenant=None)[1]["channels"]
    assert [c["channelId"] for c in only] == [globex["channelId"]]
    assert call("GET", f"{CHANNELS}?tenantId=globex")[0] == 404


def test_create_honours_an_idempotency_key(call, fake_ports, notifier) -> None:  # type: ignore[no-untyped-def]
    headers = {"Idempotency-Key": "create-slack-1"}
    status, first = call("POST", CHANNELS, slack(), headers=headers)
    assert status == 201
    status, again = call("POST", CHANNELS, slack(), headers=headers)
    assert status == 201 and again["channelId"] == first["channelId"]
    assert len(call("GET", CHANNELS)[1]["channels"]) == 1
    other = slack(configuration={"webhookUrl": SLACK_URL + "-other"})
    assert call("POST", CHANNELS, other, headers=headers)[0] == 422
    assert_no_secret(fake_ports.store.claims)
