"""The API platform of seed 003 through the api handler, on fakes: roles and permission
claims, rate limits and their headers, the audit trail (secrets redacted, 401/403 included,
scoped by role), API-metrics records with database work, deprecation headers, EMF."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stdout
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jwt
import pytest

from pgfleet.core import audit, auth, rate_limits, time_range
from pgfleet.core.errors import ValidationFailed

SINGLE = "/api/v1/postgres/single"
AUDIT = "/api/v1/system/audit"


@pytest.fixture
def invoke(fake_ports):  # type: ignore[no-untyped-def]
    """(status, headers, body) of one call; `token` is a JWT or None."""
    from pgfleet.handlers.api import lambda_handler
    from pgfleet.local.gateway import build_event
    from pgfleet.local.lambda_context import LocalLambdaContext

    def _invoke(
        method: str, path: str, token: str | None, body: Any = None, headers: dict[str, str] | None = None
    ):  # type: ignore[no-untyped-def]
        hdrs = {"Content-Type": "application/json", "User-Agent": "pytest-agent/1", **(headers or {})}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        raw = json.dumps(body).encode() if body is not None else b""
        resp = lambda_handler(build_event(method, path, hdrs, raw, "127.0.0.1"), LocalLambdaContext("test"))
        text = resp.get("body") or ""
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return resp["statusCode"], resp.get("headers") or {}, parsed

    return _invoke


@pytest.fixture
def tokens(fake_ports):  # type: ignore[no-untyped-def]
    return auth.LocalTokens(fake_ports.settings.home)


def _events(fake_ports: Any) -> list[dict[str, Any]]:
    return [
        r.data
        for (stream, *_), r in sorted(fake_ports.history.records.items(), key=lambda kv: kv[1].at)
        if stream == audit.STREAM
    ]


# --- roles ------------------------------------------------------------------------------


def test_the_seed_roles_exist_with_tenant_scope() -> None:
    assert set(auth.ROLE_PERMISSIONS) == {
        "admin", "tenant_admin", "operator", "viewer", "security_analyst", "compliance_officer", "user",
    }  # fmt: skip
    tenant_admin = auth.principal_from_claims({"sub": "t", "roles": ["tenant_admin"], "tenant_id": "acme"})
    assert tenant_admin.can("postgres:write") and tenant_admin.can("audit:read")
    assert not tenant_admin.is_platform_admin and not tenant_admin.sees_tenant("other")
    analyst = auth.principal_from_claims({"sub": "s", "roles": ["security_analyst"], "tenant_id": "acme"})
    assert (
        analyst.can("security:investigate") and analyst.can("incidents:update") and analyst.can("audit:read")
    )
    assert not analyst.can("postgres:write") and not analyst.can("compliance:assess")
    officer = auth.principal_from_claims({"sub": "c", "roles": ["compliance_officer"], "tenant_id": "acme"})
    assert (
        officer.can("compliance:assess")
        and officer.can("audit:read")
        and not officer.can("security:investigate")
    )
    user = auth.principal_from_claims({"sub": "u", "roles": ["user"], "tenant_id": "acme"})
    assert user.can("monitoring:read") and user.can("audit:read_own")
    assert not user.can("audit:read") and not user.can("postgres:write")


def test_a_tenant_admin_token_without_a_tenant_is_refused() -> None:
    with pytest.raises(auth.Forbidden):
        auth.principal_from_claims({"sub": "t", "roles": ["tenant_admin"]})


def test_explicit_permissions_add_to_the_roles() -> None:
    viewer = auth.principal_from_claims(
        {
            "sub": "v",
            "roles": ["viewer"],
            "tenant_id": "acme",
            "permissions": ["backup:create", "security:investigate"],
        }
    )
    assert (
        viewer.can("backup:create")
        and viewer.can("security:investigate")
        and not viewer.can("postgres:write")
    )


def test_unknown_roles_are_403_with_their_names(invoke, fake_ports) -> None:  # type: ignore[no-untyped-def]
    secret = auth.LocalTokens(fake_ports.settings.home).secret()
    now = int(time.time())
    token = jwt.encode(
        {
            "sub": "x",
            "roles": ["viewer", "superuser", "root"],
            "tenant_id": "acme",
            "iss": "pgfleet-local",
            "iat": now,
            "exp": now + 60,
        },
        secret,
        algorithm="HS256",
    )
    status, _, body = invoke("GET", SINGLE, token)
    assert status == 403 and "superuser" in body["error"]["message"] and "root" in body["error"]["message"]
    assert body["error"]["details"]["unknown_roles"] == ["superuser", "root"]


@pytest.mark.parametrize("permissions", ["backup:create", ["backup create"], [7], ["*"], ["backup:"]])
def test_a_malformed_permissions_claim_is_401(invoke, fake_ports, permissions) -> None:  # type: ignore[no-untyped-def]
    secret = auth.LocalTokens(fake_ports.settings.home).secret()
    now = int(time.time())
    claims = {
        "sub": "x",
        "roles": ["viewer"],
        "tenant_id": "acme",
        "iss": "pgfleet-local",
        "iat": now,
        "exp": now + 60,
    }
    claims["permissions"] = permissions
    status, _, body = invoke("GET", SINGLE, jwt.encode(claims, secret, algorithm="HS256"))
    if permissions == "backup:create":  # a single string is one permission: well formed
        assert status == 200, body
    else:
        assert status == 401 and body["error"]["code"] == "unauthorized", body


def test_mint_takes_several_roles_and_permissions(tokens) -> None:  # type: ignore[no-untyped-def]
    claims = tokens.verify(tokens.mint(["viewer", "security_analyst"], "acme", permissions=["backup:create"]))
    assert claims["roles"] == ["viewer", "security_analyst"] and claims["permissions"] == ["backup:create"]
    with pytest.raises(ValueError, match="unknown role"):
        tokens.mint(["viewer", "nobody"], "acme")
    with pytest.raises(ValueError, match="area:action"):
        tokens.mint("viewer", "acme", permissions=["everything"])
    with pytest.raises(ValueError, match="needs a tenant"):
        tokens.mint("tenant_admin", None)


def test_pgfleet_token_cli_takes_repeated_roles_and_permissions(fake_ports, capsys) -> None:  # type: ignore[no-untyped-def]
    from pgfleet import cli

    assert (
        cli.main(
            [
                "token",
                "--role",
                "viewer",
                "--role",
                "user",
                "--permission",
                "backup:create",
                "--tenant",
                "acme",
            ]
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    claims = auth.LocalTokens(fake_ports.settings.home).verify(token)
    assert claims["roles"] == ["viewer", "user"] and claims["permissions"] == ["backup:create"]
    assert cli.main(["token", "--role", "nobody", "--tenant", "acme"]) == 2


# --- rate limits ------------------------------------------------------------------------


def test_every_limited_response_carries_the_rate_limit_headers(invoke, tokens) -> None:  # type: ignore[no-untyped-def]
    status, headers, _ = invoke("GET", SINGLE, tokens.mint("viewer", "acme", sub="h"))
    assert status == 200
    assert headers["X-RateLimit-Limit"] == "1000" and headers["X-RateLimit-Remaining"] == "99"
    assert int(headers["X-RateLimit-Reset"]) > time.time()
    status, headers, _ = invoke("GET", "/api/health", None)
    assert status == 200 and "X-RateLimit-Limit" not in headers  # health is not limited


def test_the_101st_request_in_a_minute_is_429_with_retry_after(invoke, tokens, fake_ports) -> None:  # type: ignore[no-untyped-def]
    token = tokens.mint("viewer", "acme", sub="burst")
    for i in range(100):
        status, headers, _ = invoke("GET", SINGLE, token)
        assert status == 200, i
    status, headers, body = invoke("GET", SINGLE, token)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert body["error"]["details"]["window"] == "minute" and body["error"]["details"]["limit"] == 100
    assert 1 <= int(headers["Retry-After"]) <= 60 and headers["X-RateLimit-Remaining"] == "0"
    # another user of the tenant has a count of its own; health stays open
    assert invoke("GET", SINGLE, tokens.mint("viewer", "acme", sub="other"))[0] == 200
    assert invoke("GET", "/api/health", None)[0] == 200
    # the refusal is audited
    assert _events(fake_ports)[-3]["details"]["status_code"] == 429


def test_plans_hourly_limits(fake_ports, tokens) -> None:  # type: ignore[no-untyped-def]
    premium = auth.principal_from_claims(
        {"sub": "p", "roles": ["viewer"], "tenant_id": "acme", "plan": "premium"}
    )
    assert rate_limits.plan_of(fake_ports, premium).per_hour == 5000
    standard = auth.principal_from_claims({"sub": "s", "roles": ["viewer"], "tenant_id": "acme"})
    now = 7200.0 + 30  # the first minute of an hour
    for minute in range(10):  # 100 a minute for 10 minutes: 1,000 in the hour
        for _ in range(100):
            assert rate_limits.check(fake_ports, standard, now=now + minute * 60).allowed  # type: ignore[union-attr]
    refused = rate_limits.check(fake_ports, standard, now=now + 600)
    assert refused is not None and not refused.allowed and refused.window == "hour"
    assert refused.retry_after == 3600 - 630 and refused.headers()["Retry-After"] == str(3600 - 630)


def test_a_tenant_setting_sets_the_plan(fake_ports, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    fake_ports.settings = replace(fake_ports.settings, tenant_plans=(("acme", "system"),))
    principal = auth.principal_from_claims({"sub": "s", "roles": ["viewer"], "tenant_id": "acme"})
    assert rate_limits.plan_of(fake_ports, principal).name == "system"
    claimed = auth.principal_from_claims(
        {"sub": "s", "roles": ["viewer"], "tenant_id": "acme", "plan": "premium"}
    )
    assert rate_limits.plan_of(fake_ports, claimed).name == "premium"  # the token's claim first


def test_an_unknown_plan_claim_is_401(invoke, fake_ports) -> None:  # type: ignore[no-untyped-def]
    token = auth.LocalTokens(fake_ports.settings.home).mint("viewer", "acme", plan="platinum")
    status, _, body = invoke("GET", SINGLE, token)
    assert status == 401 and "platinum" in body["error"]["message"]


def test_a_counter_outage_does_not_take_the_api_down(invoke, tokens, fake_ports) -> None:  # type: ignore[no-untyped-def]
    from pgfleet.core.errors import StoreError

    def down(*_: Any, **__: Any) -> Any:
        raise StoreError("DynamoDB unreachable")

    fake_ports.rate_counter.hit = down
    status, headers, _ = invoke("GET", SINGLE, tokens.mint("viewer", "acme"))
    assert status == 200 and "X-RateLimit-Limit" not in headers


# --- audit trail ------------------------------------------------------------------------


def test_every_call_is_audited_with_secrets_redacted(invoke, tokens, fake_ports) -> None:  # type: ignore[no-untyped-def]
    token = tokens.mint("operator", "acme", sub="alice")
    status, _, created = invoke("POST", SINGLE, token, {"name": "orders-db", "password": "hunter2-secret"})
    assert status == 422  # unknown field: refused, and audited all the same
    status, _, created = invoke("POST", SINGLE, token, {"name": "orders-db"})
    assert status == 202
    password = created["credentials"]["password"]
    invoke("GET", f"{SINGLE}/{created['id']}?token=abc.def.ghi", token)
    invoke("GET", SINGLE, None)  # 401
    invoke("DELETE", f"{SINGLE}/{created['id']}", tokens.mint("viewer", "acme", sub="bob"))  # 403
    events = _events(fake_ports)
    calls = [e for e in events if e["action"].split(" ")[0] in ("GET", "POST", "DELETE")]
    assert [(e["user_id"], e["details"]["status_code"], e["result"]) for e in calls] == [
        ("alice", 422, "FAILURE"),
        ("alice", 202, "SUCCESS"),
        ("alice", 200, "SUCCESS"),
        ("anonymous", 401, "FAILURE"),
        ("bob", 403, "FAILURE"),
    ]
    first = calls[0]
    assert first["details"]["body"]["password"] == audit.REDACTED
    assert first["action"] == "POST /api/v1/postgres/single" and first["tenant_id"] == "acme"
    assert first["ip_address"] == "127.0.0.1" and first["user_agent"] == "pytest-agent/1"
    assert calls[1]["details"]["created_id"] == created["id"]
    assert calls[2]["details"]["query"] == {"token": audit.REDACTED}
    assert calls[2]["resource"] == f"{SINGLE}/{created['id']}"
    dump = json.dumps(events)
    for secret in ("hunter2-secret", password, token, "abc.def.ghi"):
        assert secret not in dump


def test_operation_steps_are_audited_as_who_asked(invoke, tokens, fake_ports) -> None:  # type: ignore[no-untyped-def]
    token = tokens.mint("operator", "acme", sub="carol")
    _, _, created = invoke("POST", SINGLE, token, {"name": "orders-db"})
    fake_ports.drain()
    steps = [e for e in _events(fake_ports) if e["action"].startswith("instance.create/")]
    assert [e["action"].split("/")[1] for e in steps] == [
        "configure_archiving", "provision", "start", "create_database", "mark_running",
    ]  # fmt: skip
    assert {e["user_id"] for e in steps} == {"carol"} and {e["resource"] for e in steps} == {created["id"]}
    assert all(
        e["result"] == "SUCCESS" and e["details"]["operation_id"] == created["operation_id"] for e in steps
    )


def test_redact_covers_keys_tokens_and_uris() -> None:
    value = {
        "Password": "p1",
        "nested": [{"api_key": "k"}, {"note": "postgresql://app:s3cret@127.0.0.1:5432/db"}],
        "header": "Bearer abc.def",
        "jwt": "eyJhbGciOi.eyJzdWIiOiJ4In0.sig",
        "empty_password": "",
        "name": "orders",
    }
    got = audit.redact(value)
    assert got["Password"] == audit.REDACTED and got["nested"][0]["api_key"] == audit.REDACTED
    assert got["nested"][1]["note"] == f"postgresql://app:{audit.REDACTED}@127.0.0.1:5432/db"
    assert got["header"] == f"Bearer {audit.REDACTED}" and got["jwt"] == audit.REDACTED
    assert got["empty_password"] == "" and got["name"] == "orders"


def test_audit_trail_filters_pages_and_summarizes(invoke, tokens, fake_ports) -> None:  # type: ignore[no-untyped-def]
    alice = tokens.mint("operator", "acme", sub="alice")
    for _ in range(3):
        invoke("GET", SINGLE, alice)
    invoke("GET", SINGLE, None)
    invoke("GET", SINGLE, tokens.mint("operator", "other", sub="mallory"))
    admin = tokens.mint("tenant_admin", "acme", sub="root")
    status, _, body = invoke("GET", f"{AUDIT}?userId=alice&pageSize=2", admin)
    assert status == 200, body
    assert body["pagination"] == {
        "page": 1, "pageSize": 2, "totalItems": 3, "totalPages": 2, "hasNext": True, "hasPrevious": False,
    }  # fmt: skip
    assert len(body["events"]) == 2 and set(body["events"][0]) == {
        "eventId", "timestamp", "userId", "tenantId", "action", "resource", "details", "ipAddress", "userAgent", "result",
    }  # fmt: skip
    summary = body["summary"]
    assert summary["totalEvents"] == 3 and summary["byResult"] == {"SUCCESS": 3, "FAILURE": 0, "PARTIAL": 0}
    assert summary["topActions"] == [{"name": "GET /api/v1/postgres/single", "count": 3}]
    # the tenant's trail holds no other tenant's events (nor anonymous ones)
    _, _, body = invoke("GET", f"{AUDIT}?pageSize=100", admin)
    assert {e["tenantId"] for e in body["events"]} == {"acme"}
    assert invoke("GET", f"{AUDIT}?tenantId=other", admin)[0] == 404
    # a platform admin sees every tenant's, the 401 included
    _, _, body = invoke(
        "GET", f"{AUDIT}?pageSize=100&action=GET%20/api/v1/postgres/single", tokens.mint("admin")
    )
    assert {e["userId"] for e in body["events"]} == {"alice", "anonymous", "mallory"}
    assert body["summary"]["unauthenticated"] == 1


def test_a_user_reads_only_its_own_audit_events(invoke, tokens) -> None:  # type: ignore[no-untyped-def]
    invoke("GET", SINGLE, tokens.mint("operator", "acme", sub="alice"))
    dave = tokens.mint("user", "acme", sub="dave")
    invoke("GET", SINGLE, dave)
    status, _, body = invoke("GET", AUDIT, dave)
    assert status == 200 and {e["userId"] for e in body["events"]} == {"dave"}
    status, _, body = invoke("GET", f"{AUDIT}?userId=alice", dave)
    assert status == 403 and body["error"]["details"]["required"] == "audit:read"
    assert invoke("GET", AUDIT, tokens.mint("viewer", "acme"))[0] == 403  # viewers have no audit access


def test_audit_time_range_past_retention_is_422(invoke, tokens) -> None:  # type: ignore[no-untyped-def]
    admin = tokens.mint("admin")
    status, _, body = invoke("GET", f"{AUDIT}?timeRange=400d", admin)
    assert status == 422 and "retention" in body["error"]["message"]
    assert invoke("GET", f"{AUDIT}?timeRange=yesterday", admin)[0] == 422
    assert invoke("GET", f"{AUDIT}?timeRange=7d", admin)[0] == 200


def test_no_api_changes_an_audit_event(invoke, tokens) -> None:  # type: ignore[no-untyped-def]
    admin = tokens.mint("admin")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        status, headers, _ = invoke(method, AUDIT, admin, {})
        assert status == 405 and headers["Allow"] == "GET"


def test_time_range_forms() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    year = timedelta(days=365)
    assert time_range.parse("24h", default=year, max_age=year, now=now).start == now - timedelta(hours=24)
    assert time_range.parse("P1DT12H", default=year, max_age=year, now=now).start == now - timedelta(hours=36)
    got = time_range.parse("2026-12-01T00:00:00Z/2026-12-01T06:00:00", default=year, max_age=year, now=now)
    assert got.start == datetime(2026, 12, 1, tzinfo=UTC) and got.end == datetime(2026, 12, 1, 6, tzinfo=UTC)
    assert time_range.parse(None, default=timedelta(hours=1), max_age=year, now=now).start == now - timedelta(
        hours=1
    )
    for bad in ("P", "PT", "0h", "2026-12-01T06:00:00Z/2026-12-01T00:00:00Z", "tomorrow"):
        with pytest.raises(ValidationFailed):
            time_range.parse(bad, default=year, max_age=year, now=now)


# --- API metrics, EMF, deprecation -----------------------------------------------------------


def test_each_request_stores_the_seed_api_metrics_record(invoke, tokens, fake_ports) -> None:  # type: ignore[no-untyped-def]
    token = tokens.mint("operator", "acme", sub="erin")
    _, _, created = invoke("POST", SINGLE, token, {"name": "orders-db"})
    invoke("GET", f"{SINGLE}/{created['id']}", token)
    records = [r for (stream, *_), r in fake_ports.history.records.items() if stream == audit.METRICS_STREAM]
    got = max(records, key=lambda r: r.at).data
    assert set(got) == {
        "api_endpoint", "method", "response_time_ms", "status_code", "tenant_id", "user_id", "timestamp",
        "request_size_bytes", "response_size_bytes", "database_queries", "database_time_ms",
    }  # fmt: skip
    assert got["api_endpoint"] == "/api/v1/postgres/single/<instance_id>" and got["status_code"] == 200
    assert got["user_id"] == "erin" and got["tenant_id"] == "acme" and got["response_size_bytes"] > 0


def test_database_work_is_counted_from_the_seam() -> None:
    from pgfleet.core import request_context

    with request_context.scope("r") as scope:
        request_context.count_database(0.5)  # before the part that is counted: ignored
        scope.database = request_context.DatabaseWork()
        request_context.count_database(0.002)
        request_context.count_database(0.003)
    assert scope.database.queries == 2 and abs(scope.database.seconds - 0.005) < 1e-9


def test_emf_document_in_aws(invoke, tokens, fake_ports) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from pgfleet.core import settings as settings_module

    original = settings_module.get_settings()
    settings_module.get_settings.cache_clear()
    import os

    os.environ["PGFLEET_EMF_METRICS"] = "on"
    try:
        out = io.StringIO()
        with redirect_stdout(out):
            invoke("GET", SINGLE, tokens.mint("viewer", "acme"))
        documents = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    finally:
        del os.environ["PGFLEET_EMF_METRICS"]
        settings_module.get_settings.cache_clear()
    assert replace(original) == original
    (doc,) = documents
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "pgfleet"
    assert {m["Name"] for m in directive["Metrics"]} >= {"Requests", "ResponseTime", "DatabaseQueries"}
    assert (
        doc["route"] == SINGLE
        and doc["status_class"] == "2xx"
        and doc["Requests"] == [1.0]
        or doc["Requests"] == 1.0
    )


def test_deprecated_routes_say_so_in_headers(invoke, tokens) -> None:  # type: ignore[no-untyped-def]
    from pgfleet.core.domain import deprecated, requires
    from pgfleet.handlers import api

    path = "/api/v1/zz-old"
    before = len(api.app._static_routes)

    @api.app.get(path)
    @requires("postgres:read")
    @deprecated(date(2026, 6, 1), date(2027, 6, 1), link="https://pgfleet.dev/api/v2")
    def old() -> dict[str, str]:
        return {"old": "yes"}

    api.routes.cache_clear()
    try:
        status, headers, body = invoke("GET", path, tokens.mint("viewer", "acme"))
        assert status == 200 and body == {"old": "yes"}
        assert headers["Deprecation"] == f"@{int(datetime(2026, 6, 1, tzinfo=UTC).timestamp())}"
        assert headers["Sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"
        assert headers["Link"] == '<https://pgfleet.dev/api/v2>; rel="deprecation"'
    finally:
        del api.app._static_routes[before:]
        api.routes.cache_clear()
    with pytest.raises(ValueError, match="182 days"):
        deprecated(date(2026, 6, 1), date(2026, 9, 1))


def test_a_change_over_the_limit_is_refused_before_it_runs(invoke, tokens, fake_ports) -> None:  # type: ignore[no-untyped-def]
    token = tokens.mint("operator", "acme", sub="busy")
    now = time.time()
    hour = int(now // 3600 * 3600)
    minute = int((now - hour) // 60)
    fake_ports.rate_counter.counts[f"acme|busy#{hour}"] = {"n": 100, f"m{minute:02d}": 100}
    status, headers, body = invoke("POST", SINGLE, token, {"name": "never-made"})
    if status != 429:  # the minute turned between the set-up and the call
        pytest.skip("the minute turned over")
    assert body["error"]["code"] == "rate_limited" and "Retry-After" in headers
    assert (
        not [k for (k, _) in fake_ports.store.records if k not in ("claim",)]
        and fake_ports.queue.messages == []
    )
