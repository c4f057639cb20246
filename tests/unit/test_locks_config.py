"""The auto-resolve configuration of a tenant: defaults, partial updates, bad input."""

from __future__ import annotations

from typing import Any

CONFIG = "/api/v1/locks/auto-resolve/config"


def test_defaults_then_partial_updates_are_kept(call: Any) -> None:
    status, body = call("GET", f"{CONFIG}?tenantId=acme")
    assert status == 200 and body["enabled"] is False and body["maxSessionsPerCycle"] == 1, body
    status, body = call(
        "PUT", f"{CONFIG}?tenantId=acme", {"excludedApplications": ["etl"], "maxBlockingDuration": 60}
    )
    assert status == 200 and body["excludedApplications"] == ["etl"], body
    status, again = call("PUT", f"{CONFIG}?tenantId=acme", {"enabled": True})
    assert status == 200 and again["excludedApplications"] == ["etl"] and again["enabled"] is True, again
    status, read = call("GET", f"{CONFIG}?tenantId=acme")
    assert read == again, (read, again)


def test_bad_values_are_422_and_change_nothing(call: Any) -> None:
    for bad in ({"maxSessionsPerCycle": 0}, {"maxSessionsPerCycle": 101}, {"businessHoursTimezone": "Mars/Base"},
                {"businessHoursStart": 18, "businessHoursEnd": 9}, {"severityThreshold": "HUGE"}):  # fmt: skip
        status, body = call("PUT", f"{CONFIG}?tenantId=acme", bad)
        assert status == 422, (bad, body)
    assert call("GET", f"{CONFIG}?tenantId=acme")[1]["maxSessionsPerCycle"] == 1


def test_viewers_read_but_never_enable_and_other_tenants_are_404(call: Any) -> None:
    assert call("GET", f"{CONFIG}?tenantId=acme", role="viewer")[0] == 200
    assert call("PUT", f"{CONFIG}?tenantId=acme", {"enabled": True}, role="viewer")[0] == 403
    assert call("GET", f"{CONFIG}?tenantId=globex")[0] == 404


def test_a_stopped_target_is_a_409_with_its_status_and_an_unknown_one_404(call: Any, fake_ports: Any) -> None:
    fake_ports.store.create("instance", {
        "id": "pgi-0123456789ab", "tenant_id": "acme", "name": "idle-db", "status": "stopped",
        "created_at": "2026-01-01T00:00:00Z",
    })  # fmt: skip
    for path in ("/api/v1/locks/activity", "/api/v1/locks/blocking-sessions"):
        status, body = call("GET", f"{path}?targetId=pgi-0123456789ab")
        assert status == 409 and body["error"]["details"]["status"] == "stopped", body
        assert call("GET", f"{path}?targetId=pgi-ba9876543210")[0] == 404
        assert call("GET", f"{path}?targetId=pgi-0123456789ab", tenant="globex")[0] == 404
    status, body = call(
        "POST", "/api/v1/locks/blocking-sessions/42/terminate?targetId=pgi-0123456789ab", {"reason": "x"}
    )
    assert status == 409, body
    # Without a target: the tenant's running servers only (none here), never an error.
    status, body = call("GET", "/api/v1/locks/blocking-sessions")
    assert status == 200 and body["blockingSessions"] == [], body
