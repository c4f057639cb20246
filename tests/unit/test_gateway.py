"""The local gateway: what API Gateway does in front of the api function, on a loopback socket
served by a thread of this process."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def gateway(fake_ports: Any) -> Iterator[int]:
    from pgfleet.local.gateway import GatewayServer, _Handler

    server = GatewayServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _request(port: int, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw) if raw else None


def test_the_handler_runs_one_event_at_a_time(gateway: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolver keeps the current event and the caller on itself: two events in it at once
    read each other's (a request ran as another tenant, or lost its caller: 500)."""
    from pgfleet.handlers import api

    inside, most = [0], [0]
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> tuple[dict[str, Any], Any]:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json"},
            "body": "{}",
        }, lambda: None

    monkeypatch.setattr(api, "handle", handler)
    statuses: list[int] = []
    clients = [threading.Thread(target=lambda: statuses.append(_request(gateway, "GET", "/api/health")[0]))
               for _ in range(6)]  # fmt: skip
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    assert statuses == [200] * 6 and most[0] == 1


def test_concurrent_callers_each_see_their_own_tenant(gateway: int, call: Any, fake_ports: Any) -> None:
    from pgfleet.core.auth import LocalTokens

    tokens = LocalTokens(fake_ports.settings.home)
    for tenant in ("acme", "globex"):
        assert call("POST", "/api/v1/postgres/single", {"name": f"{tenant}-db"}, tenant=tenant)[0] == 202
    wrong: list[Any] = []

    def client(tenant: str) -> None:
        headers = {"Authorization": f"Bearer {tokens.mint('operator', tenant)}"}
        for _ in range(15):
            status, _, body = _request(gateway, "GET", "/api/v1/postgres/single", headers=headers)
            if status != 200 or [i["name"] for i in body["instances"]] != [f"{tenant}-db"]:
                wrong.append((tenant, status, body))

    clients = [threading.Thread(target=client, args=(t,)) for t in ("acme", "globex") * 3]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    assert wrong == []


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "QUERY"])
def test_any_method_reaches_the_api_and_gets_its_error_shape(gateway: int, method: str) -> None:
    status, headers, body = _request(gateway, method, "/api/health")
    assert status == 405 and headers["allow"] == "GET", body
    assert body["error"]["code"] == "method_not_allowed"


def test_a_body_that_is_not_utf8_is_passed_on_as_bytes(gateway: int) -> None:
    from pgfleet.local.gateway import build_event

    event = build_event("POST", "/x", {"Content-Type": "application/json"}, b"\xff\xfe", "127.0.0.1")
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\xfe"
    text = build_event("POST", "/x", {"Content-Type": "application/json"}, '{"a": "é"}'.encode(), "127.0.0.1")
    assert text["isBase64Encoded"] is False and text["body"] == '{"a": "é"}'
    status, _, body = _request(
        gateway, "POST", "/api/v1/postgres/single", b"\xff", {"Content-Type": "text/plain"}
    )
    assert status in (400, 401) and body["error"]["code"] in ("bad_request", "unauthorized")


@pytest.mark.parametrize("length", ["abc", "-1", "1e3"])
def test_a_content_length_that_is_not_a_number_is_400(gateway: int, length: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway, timeout=10)
    conn.putrequest("POST", "/api/v1/postgres/single")
    conn.putheader("Content-Length", length)
    conn.endheaders()
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 400 and body["error"]["code"] == "bad_request"
