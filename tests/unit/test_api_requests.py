"""Requests that are not what a route takes get a 4xx in the one error shape, and change
nothing: another method, a body that is not JSON or not UTF-8, an id that cannot exist, an
oversized header; and a newcomer's curl without a Content-Type still works."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"


def _raw(fake_ports: Any, method: str, path: str, body: bytes = b"", content_type: str | None = None,
         role: str | None = "operator", tenant: str = "acme",
         event_fields: dict[str, Any] | None = None) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    """A request as the local gateway turns it into an event, with the body's bytes as sent."""
    from pgfleet.core.auth import LocalTokens
    from pgfleet.handlers.api import lambda_handler
    from pgfleet.local.gateway import build_event
    from pgfleet.local.lambda_context import LocalLambdaContext

    headers = (
        {"Authorization": f"Bearer {LocalTokens(fake_ports.settings.home).mint(role, tenant)}"}
        if role
        else {}
    )
    if content_type is not None:
        headers["Content-Type"] = content_type
    event = {**build_event(method, path, headers, body, "127.0.0.1"), **(event_fields or {})}
    resp = lambda_handler(event, LocalLambdaContext("test"))
    return resp["statusCode"], resp.get("headers") or {}, json.loads(resp["body"])


def _assert_error(body: Any, code: str) -> None:
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert set(body["error"]) == {"code", "message", "details", "request_id"} and body["error"]["request_id"]


def _nothing_changed(fake_ports: Any) -> None:
    assert fake_ports.store.list("instance")[0] == [] and fake_ports.queue.messages == []


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded"])
def test_a_json_body_without_its_content_type_is_read_as_json(fake_ports, content_type):
    """curl -d '{"name": "x"}' sends form-urlencoded unless told otherwise."""
    status, _, body = _raw(fake_ports, "POST", SINGLE, b'{"name": "orders-db"}', content_type)
    assert status == 202, body
    assert body["name"] == "orders-db" and body["tenant_id"] == "acme"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/x-www-form-urlencoded", b"name=orders-db"), (None, b"name=orders-db"),
     ("text/plain", b'{"name": "orders-db"}'), ("application/xml", b"<name>orders-db</name>"),
     ("multipart/form-data; boundary=x", b"--x--")],
)  # fmt: skip
def test_a_body_that_is_not_json_is_415(fake_ports, content_type, body):
    status, _, got = _raw(fake_ports, "POST", SINGLE, body, content_type)
    assert status == 415, got
    _assert_error(got, "unsupported_media_type")
    assert "Content-Type: application/json" in got["error"]["message"]
    _nothing_changed(fake_ports)


def test_json_with_a_charset_or_a_json_suffix_is_json(fake_ports):
    for content_type, name in (
        ("application/json; charset=utf-8", "one-db"),
        ("application/merge-patch+json", "two-db"),
    ):
        status, _, body = _raw(fake_ports, "POST", SINGLE, json.dumps({"name": name}).encode(), content_type)
        assert status == 202, (content_type, body)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_a_body_that_is_not_utf8_is_400(fake_ports, content_type):
    """The gateway passes it on base64-encoded, as API Gateway does with bytes."""
    status, _, got = _raw(fake_ports, "POST", SINGLE, b'{"name": "\xff"}', content_type)
    assert status == 400, got
    _assert_error(got, "bad_request")
    assert "UTF-8" in got["error"]["message"]
    _nothing_changed(fake_ports)


def test_a_base64_body_from_api_gateway_is_read(fake_ports):
    encoded = base64.b64encode(b'{"name": "orders-db"}').decode()
    status, _, got = _raw(fake_ports, "POST", SINGLE, content_type="application/json",
                          event_fields={"body": encoded, "isBase64Encoded": True})  # fmt: skip
    assert status == 202, got
    status, _, got = _raw(fake_ports, "POST", SINGLE, content_type="application/json",
                          event_fields={"body": "not base64!", "isBase64Encoded": True})  # fmt: skip
    assert status == 400, got


@pytest.mark.parametrize("method", ["TRACE", "PATCH", "PUT", "CONNECT", "PROPFIND", "HEAD", "OPTIONS"])
def test_a_method_a_path_does_not_declare_is_405_with_allow(call, fake_ports, method):
    status, headers, got = _raw(fake_ports, method, SINGLE)
    assert status == 405, got
    _assert_error(got, "method_not_allowed")
    assert headers["Allow"] == "GET, POST" and got["error"]["details"] == {"allowed": ["GET", "POST"]}
    status, headers, got = _raw(fake_ports, method, f"{SINGLE}/pgi-000000000000/stop")
    assert status == 405 and headers["Allow"] == "POST"
    # public paths answer 405 without a token; protected ones want the token first
    status, headers, got = _raw(fake_ports, method, "/api/health", role=None)
    assert status == 405 and headers["Allow"] == "GET", got
    assert _raw(fake_ports, method, SINGLE, role=None)[0] == 401
    _nothing_changed(fake_ports)


def test_a_path_that_does_not_exist_is_still_404(fake_ports):
    status, _, got = _raw(fake_ports, "TRACE", "/api/v1/nothing-here")
    assert status == 404, got
    _assert_error(got, "not_found")
    status, _, got = _raw(fake_ports, "POST", "/api/v1/nothing-here", b"\xff", "text/plain")
    assert status == 404, got


@pytest.mark.parametrize(
    "path",
    [f"{SINGLE}/nonexistent", f"{SINGLE}/nonexistent/stats", f"{CLUSTERS}/pgi-000000000000",
     f"{SINGLE}/{'x' * 300}", "/api/v1/operations/nope", "/api/v1/backup/status/nope"],
)  # fmt: skip
def test_an_id_that_cannot_exist_is_404(call, path):
    status, got = call("GET", path)
    assert status == 404, got
    _assert_error(got, "not_found")
    assert len(got["error"]["message"]) < 200


def test_a_long_or_unprintable_idempotency_key_is_422(call, fake_ports):
    for key in ("k" * 256, "k" * 100_000, "tab\there", " "):
        status, got = call("POST", SINGLE, {"name": "orders-db"}, headers={"Idempotency-Key": key})
        assert status == 422, (key[:20], got)
        _assert_error(got, "validation_error")
        assert got["error"]["details"][0]["field"] == "header.Idempotency-Key"
    _nothing_changed(fake_ports)
    first = call("POST", SINGLE, {"name": "orders-db"}, headers={"Idempotency-Key": "k" * 255})
    again = call("POST", SINGLE, {"name": "orders-db"}, headers={"Idempotency-Key": "k" * 255})
    assert first[0] == again[0] == 202 and first[1]["id"] == again[1]["id"]


def test_wrong_state_messages_read_well(call, fake_ports):
    status, created = call("POST", SINGLE, {"name": "orders-db"})
    status, got = call("POST", f"{SINGLE}/{created['id']}/start")
    assert status == 409 and got["error"]["message"] == "cannot start an instance that is creating", got
    openapi = call("GET", "/api/v1/openapi.json", role=None)[1]
    summaries = [op.get("summary", "") for item in openapi["paths"].values() for op in item.values()]
    assert not [s for s in summaries if " a instance" in s or s.startswith("A instance")]
    assert "Delete an instance and its data" in summaries
