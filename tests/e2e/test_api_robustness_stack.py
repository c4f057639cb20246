"""Bad requests through the real local gateway get a 4xx JSON answer, never a 500 or a dropped
connection: bodies that are not UTF-8 or not JSON, methods a path does not declare; then
schemathesis, from the OpenAPI document, against every route with a platform admin token."""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LocalStack, running_stack, wait_for

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"
# Bounds of the schemathesis run: cases per operation, and seconds for the whole run.
MAX_EXAMPLES = 25
MAX_SECONDS = 180


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-fuzz-") as s:
        yield s


@pytest.fixture(scope="module")
def admin(stack: LocalStack) -> str:
    token = stack.token("admin", None)  # no tenant: a platform token
    assert "tenant_id" not in json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return token


def _send(stack: LocalStack, conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
          headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw) if raw else None


def _error(body: Any, code: str) -> None:
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert set(body["error"]) == {"code", "message", "details", "request_id"}


def _no_instances(stack: LocalStack, token: str) -> None:
    status, listing = stack.request("GET", SINGLE, token=token)
    assert status == 200 and listing["instances"] == [], listing


def test_a_body_that_is_not_utf8_is_answered_400_on_a_live_connection(stack: LocalStack, admin: str) -> None:
    auth = {"Authorization": f"Bearer {admin}"}
    conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    for content_type in ("application/json", "application/x-www-form-urlencoded", "text/plain"):
        status, _, body = _send(stack, conn, "POST", SINGLE, b"\xff", {**auth, "Content-Type": content_type})
        assert status == 400, (content_type, body)
        _error(body, "bad_request")
        assert "UTF-8" in body["error"]["message"]
    # the same connection still serves the next request
    status, _, body = _send(stack, conn, "GET", "/api/health", None, {})
    assert status == 200, body
    conn.close()
    _no_instances(stack, admin)


def test_a_text_plain_body_is_415(stack: LocalStack, admin: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    headers = {"Authorization": f"Bearer {admin}", "Content-Type": "text/plain"}
    for path in (SINGLE, f"{SINGLE}/pgi-000000000000/tenants", "/api/v1/backup/execute"):
        status, _, body = _send(stack, conn, "POST", path, b'{"name": "orders-db"}', headers)
        assert status == 415, (path, body)
        _error(body, "unsupported_media_type")
        assert "Content-Type: application/json" in body["error"]["message"]
    conn.close()
    _no_instances(stack, admin)


def test_trace_and_any_undeclared_method_is_405(stack: LocalStack, admin: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    auth = {"Authorization": f"Bearer {admin}"}
    for method, path, allowed in (
        ("TRACE", SINGLE, "GET, POST"),
        ("TRACE", "/api/health", "GET"),
        ("TRACE", f"{CLUSTERS}/pgc-000000000000/pause", "POST"),
        ("PATCH", f"{SINGLE}/pgi-000000000000", "DELETE, GET"),
        ("PROPFIND", "/api/v1/backup/list", "GET"),
    ):
        status, headers, body = _send(stack, conn, method, path, None, auth)
        assert status == 405, (method, path, body)
        _error(body, "method_not_allowed")
        assert headers["allow"] == allowed
    conn.close()


def test_a_json_body_sent_as_curl_does_by_default_is_read_as_json(stack: LocalStack) -> None:
    """curl -X POST .../single -d '{"name": "x"}', without -H 'Content-Type: application/json'."""
    token = stack.token("operator", "curl-user")
    conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = _send(stack, conn, "POST", SINGLE, b'{"name": "curl-db"}', headers)
    assert status == 202, body
    assert body["name"] == "curl-db" and body["tenant_id"] == "curl-user"
    conn.close()
    stack.wait_operation(body["operation_id"], token, timeout=180)
    status, _ = stack.request("DELETE", f"{SINGLE}/{body['id']}", token=token)
    assert status == 202


# --- schemathesis --------------------------------------------------------------------------------


def _accepted(stack: LocalStack, token: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    status, got = stack.request(method, path, body, token)
    assert status in (200, 201, 202), (path, got)
    return got  # type: ignore[no-any-return]


def _fixtures(stack: LocalStack, token: str) -> dict[str, list[str]]:
    """Real resources for the generated requests to act on, by the path parameter (or body
    field) they fill; DELETE of an instance or a cluster gets one of its own."""
    started = [
        _accepted(stack, token, "POST", SINGLE, {"name": "fuzz-db"}),
        _accepted(stack, token, "POST", SINGLE, {"name": "fuzz-doomed-db"}),
        _accepted(stack, token, "POST", CLUSTERS, {"name": "fuzz-ha", "node_count": 1}),
    ]
    for created in started:
        stack.wait_operation(created["operation_id"], token, timeout=300)
    single, doomed, cluster = (c["id"] for c in started)
    replicas = _accepted(stack, token, "POST", f"{SINGLE}/{single}/replicas", {"replica_count": 1})
    stack.wait_operation(replicas["operation_ids"][0], token, timeout=180)
    _accepted(stack, token, "POST", f"{SINGLE}/{single}/tenants", {"tenant_id": "shop-a"})
    _accepted(stack, token, "POST", f"{CLUSTERS}/{cluster}/tenants", {"tenant_id": "shop-a"})

    def completed_backup() -> str | None:  # the first full backup runs after the create
        listing = _accepted(stack, token, "GET", f"{SINGLE}/{single}/backups")["backups"]
        return next((b["backup_id"] for b in listing if b["status"] == "completed"), None)

    backup = wait_for(completed_backup, 240, interval=1, what="a completed backup")
    verification = _accepted(stack, token, "POST", f"/api/v1/backup/verify/{backup}")["verificationId"]
    return {
        "single": [single], "doomed-single": [doomed], "cluster": [cluster], "tenant": ["shop-a"],
        "replica": [r["id"] for r in replicas["replicas"]],
        "operation": [started[0]["operation_id"], *replicas["operation_ids"]],
        "backup": [backup], "verification": [verification], "target": [single, cluster], "node": ["n1"],
    }  # fmt: skip


def _dictionary_for(method: str, path: str, name: str) -> str | None:
    if name in ("resource_id", "instance_id"):
        if path.startswith(CLUSTERS):
            return "cluster"
        return "doomed-single" if method == "delete" and path == f"{SINGLE}/{{resource_id}}" else "single"
    return {
        "tenant_id": "tenant", "replica_id": "replica", "operation_id": "operation", "backupId": "backup",
        "verificationId": "verification",
    }.get(name)  # fmt: skip


def _config(openapi: dict[str, Any], fixtures: dict[str, list[str]], path: Path) -> None:
    """A schemathesis.toml: real ids most of the time (generated ones the rest), per operation."""
    lines = []
    for name, values in fixtures.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps([v for v in values if v])}", ""]
    for route, item in openapi["paths"].items():
        for method, operation in item.items():
            bindings = {}
            for param in operation.get("parameters", []):
                if param["in"] == "path" and (dictionary := _dictionary_for(method, route, param["name"])):
                    bindings[f"path.{param['name']}"] = dictionary
            body = json.dumps(operation.get("requestBody", {}))
            for field, dictionary in (("targetId", "target"), ("backupId", "backup"), ("backup_id", "backup"),
                                      ("node_id", "node")):  # fmt: skip
                if f'"{field}"' in body:
                    bindings[f"body.{field}"] = dictionary
            if not bindings:
                continue
            inline = ", ".join(
                f'"{k}" = {{ dictionary = "{v}", probability = 0.8 }}' for k, v in bindings.items()
            )
            lines += ["[[operations]]", f'include-path = "{route}"', f'include-method = "{method.upper()}"',
                      f"parameters = {{ {inline} }}", ""]  # fmt: skip
    path.write_text("\n".join(lines))


def _interactions(report: Path) -> Iterator[tuple[str, str, int | None]]:
    """(method, operation path, status or None) of every request schemathesis sent."""
    for line in report.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for case_id, case in recorder.get("cases", {}).items():
            interaction = recorder.get("interactions", {}).get(case_id)
            if interaction is None:
                continue
            response = interaction.get("response")
            yield case["value"]["method"].lower(), case["value"]["path"], response and response["status_code"]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_on_any_route(
    stack: LocalStack, admin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    openapi = _accepted(stack, admin, "GET", "/api/v1/openapi.json")
    _config(openapi, _fixtures(stack, admin), tmp_path / "schemathesis.toml")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(tmp_path / "schemathesis.toml"),
         "run", f"{stack.url}/api/v1/openapi.json", "--header", f"Authorization: Bearer {admin}",
         "--checks", "not_a_server_error", "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_SECONDS),
         "--workers", "1", "--request-timeout", "30", "--seed", "20261201", "--no-color",
         "--report", "ndjson", "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=MAX_SECONDS + 120, env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    (report,) = (tmp_path / "report").glob("*.ndjson")
    seen = list(_interactions(report))
    declared = {(m, p) for p, item in openapi["paths"].items() for m in item}
    by_operation: dict[tuple[str, str], Counter[int | None]] = defaultdict(Counter)
    for method, path, status in seen:
        by_operation[(method, path)][status] += 1
    server_errors = [(m, p, s) for m, p, s in seen if s is None or s >= 500]
    reached = {op for op, statuses in by_operation.items() if set(statuses) - {None, 401, 403, 405}}
    succeeded = {op for op, statuses in by_operation.items() if any(s and 200 <= s < 300 for s in statuses)}
    with capsys.disabled():
        print(
            f"\nschemathesis: {len(seen)} cases in {elapsed:.0f}s over {len(declared)} operations; "
            f"{len(declared & reached)} reached with the admin token, {len(declared & succeeded)} answered 2xx; "
            f"{len(server_errors)} server errors or dropped connections"
        )
    assert not server_errors, (server_errors[:20], output[-4000:])
    assert "Network Error" not in output and "Runtime Error" not in output, output[-4000:]
    assert declared <= reached, (sorted(declared - reached), output[-4000:])
    assert len(seen) >= len(declared) * 5, output[-4000:]
    assert elapsed < MAX_SECONDS + 90
    # nothing is left half-done by a refused request: every instance answers as a whole
    status, listing = stack.request("GET", SINGLE, token=admin)
    assert status == 200 and all(i["status"] for i in listing["instances"])
