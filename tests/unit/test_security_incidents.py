"""Security incidents (seed 003, phase 6): declared with a number SEC-YYYY-NNN, moved through
OPEN -> INVESTIGATING -> CONTAINED -> ERADICATED -> RECOVERED -> CLOSED (forward with skips,
back only with a reason, CLOSED final), timed (MTTR), scoped to the caller's tenant and
audited; with fake ports, through the api handler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgfleet.core.auth import ROLE_PERMISSIONS, Principal
from pgfleet.core.errors import Conflict
from pgfleet.domains.security import incidents
from pgfleet.domains.security.incident_models import SecurityIncidentCreate, SecurityIncidentStatusUpdate
from pgfleet.ports.notifier import Message, Notifier

S = "/api/v1/security/incidents"
ANALYST = {"role": "security_analyst", "tenant": "acme"}
BODY = {
    "incident_type": "UNAUTHORIZED_ACCESS",
    "severity": "HIGH",
    "description": "Unauthorized access attempt detected",
    "affected_systems": ["auth-service", "database"],
    "affected_users": 0,
    "affected_records": 0,
    "data_types_affected": [],
    "detection_method": "Automated threat detection",
    "incident_commander": "security_lead_id",
}

# Another analyst of acme, whose request runs inside this one's (a race, in order).
OTHER_ANALYST = Principal(
    sub="other-analyst", tenant_id="acme", roles=("security_analyst",),
    permissions=ROLE_PERMISSIONS["security_analyst"],
)  # fmt: skip


class Clock:
    """The service's clock, moved by the test (`incidents.utcnow`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: datetime) -> None:
        self.now = start
        monkeypatch.setattr(incidents, "utcnow", lambda: self.now)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _create(call: Any, body: dict | None = None, **who: Any) -> dict:
    status, got = call("POST", f"{S}/create", body or BODY, **(who or ANALYST))
    assert status == 201, got
    return got  # type: ignore[no-any-return]


def _move(call: Any, incident_id: str, status: str, **more: Any) -> tuple[int, Any]:
    who = {k: more.pop(k) for k in ("role", "tenant") if k in more} or ANALYST
    return call("PUT", f"{S}/{incident_id}/status", {"status": status, **more}, **who)  # type: ignore[no-any-return]


def _audit(fake_ports: Any, action: str) -> list[dict]:
    found = [r.data for r in fake_ports.history.records.values() if r.stream == "audit"]
    return sorted((d for d in found if d["action"] == action), key=lambda d: d["timestamp"])


# --- create and numbering -----------------------------------------------------------------------


def test_create_answers_201_with_the_seeds_fields(call: Any, fake_ports: Any) -> None:
    got = _create(call)
    year = datetime.now(UTC).year
    assert got["incident_number"] == f"SEC-{year}-001"
    assert got["incident_id"].startswith("secinc-") and got["status"] == "OPEN"
    assert got["incident_commander"] == "security_lead_id" and got["created_at"].endswith("Z")
    assert (got["tenant_id"], got["incident_type"], got["severity"]) == (
        "acme",
        "UNAUTHORIZED_ACCESS",
        "HIGH",
    )
    assert got["affected_systems"] == ["auth-service", "database"]
    assert (
        got["mttr_minutes"] is None and got["contained_at"] is None and got["time_to_close_minutes"] is None
    )
    (first,) = got["timeline"]
    assert (first["status"], first["action"], first["timestamp"]) == (
        "OPEN",
        "Incident created",
        got["created_at"],
    )
    assert first["updated_by"] == got["created_by"] != "security_lead_id"
    status, again = call("GET", f"{S}/{got['incident_id']}", **ANALYST)
    assert status == 200 and again == got
    (event,) = _audit(fake_ports, "security.incident.create")
    assert event["details"]["incident_number"] == got["incident_number"] and event["tenant_id"] == "acme"
    assert event["user_id"] == got["created_by"]


def test_numbers_follow_each_other_and_start_again_each_year(
    call: Any, fake_ports: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch, datetime(2024, 12, 31, 23, 58, tzinfo=UTC))
    assert [_create(call)["incident_number"] for _ in range(3)] == [
        "SEC-2024-001",
        "SEC-2024-002",
        "SEC-2024-003",
    ]
    clock.advance(minutes=3)  # 2025-01-01 00:01
    assert _create(call)["incident_number"] == "SEC-2025-001"
    # another tenant draws from the same sequence: a number names one incident of the fleet
    assert _create(call, tenant="initech", role="security_analyst")["incident_number"] == "SEC-2025-002"
    clock.now = datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)  # a late clock still counts in its year
    assert _create(call)["incident_number"] == "SEC-2024-004"


def test_two_concurrent_creates_never_share_a_number(
    call: Any, fake_ports: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other create lands between this one's read of the counter and its write: this one's
    transaction fails (the counter moved) and it takes the next number."""
    Clock(monkeypatch, datetime(2024, 3, 1, 10, 0, tzinfo=UTC))
    _create(call)  # the year's counter exists: both racers read last = 1
    store = fake_ports.store
    real = store.transact
    raced: list[str] = []

    def racing(writes: Any) -> Any:
        if not raced and any(getattr(w, "kind", "") == incidents.KIND for w in writes):
            raced.append("racing")
            other = incidents.create(fake_ports, OTHER_ANALYST, SecurityIncidentCreate.model_validate(BODY))
            raced[0] = other["incident_number"]  # the concurrent request wins
        return real(writes)

    monkeypatch.setattr(store, "transact", racing)
    mine = _create(call)["incident_number"]
    assert raced == ["SEC-2024-002"] and mine == "SEC-2024-003"
    numbers = sorted(r["incident_number"] for (k, _), r in store.records.items() if k == incidents.KIND)
    assert numbers == ["SEC-2024-001", "SEC-2024-002", "SEC-2024-003"]
    assert all(store.claimed(f"security-incident-number#{n}") for n in numbers)


def test_a_number_already_claimed_is_never_given_again(
    call: Any, fake_ports: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unique key guards the number even when the counter lags behind it (its first
    create raced too): the number is skipped, not reused."""
    Clock(monkeypatch, datetime(2024, 5, 1, tzinfo=UTC))
    assert fake_ports.store.claim("security-incident-number#SEC-2024-001", "secinc-00000000dead")
    assert _create(call)["incident_number"] == "SEC-2024-002"
    assert fake_ports.store.get(incidents.YEAR_KIND, "2024")["last"] == 2
    assert _create(call)["incident_number"] == "SEC-2024-003"


def test_a_create_that_keeps_losing_the_race_is_a_409(
    call: Any, fake_ports: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_moved(writes: Any) -> Any:
        raise Conflict("security_incident_year 2024 was changed concurrently; retry")

    monkeypatch.setattr(fake_ports.store, "transact", always_moved)
    status, got = call("POST", f"{S}/create", BODY, **ANALYST)
    assert status == 409 and "incident number" in got["error"]["message"], got


def test_an_idempotency_key_replays_the_first_create(call: Any, fake_ports: Any) -> None:
    key = {"Idempotency-Key": "incident-42"}
    first = call("POST", f"{S}/create", BODY, headers=key, **ANALYST)
    again = call("POST", f"{S}/create", BODY, headers=key, **ANALYST)
    assert first[0] == again[0] == 201 and first[1]["incident_id"] == again[1]["incident_id"]
    status, got = call("POST", f"{S}/create", {**BODY, "severity": "LOW"}, headers=key, **ANALYST)
    assert status == 422 and "Idempotency-Key" in got["error"]["message"]
    assert _incidents(call)["pagination"]["totalItems"] == 1


# --- transitions, timeline, MTTR ------------------------------------------------------------------


def test_the_walk_through_every_status_keeps_a_timeline_and_the_times(
    call: Any, fake_ports: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch, datetime(2024, 1, 15, 10, 0, tzinfo=UTC))
    incident = _create(call)
    iid = incident["incident_id"]
    clock.advance(minutes=10)
    status, got = _move(
        call, iid, "INVESTIGATING", status_notes="looking at the auth logs", updated_by="alice"
    )
    assert status == 200 and got["status"] == "INVESTIGATING" and got["mttr_minutes"] is None, got
    clock.advance(minutes=20)
    status, got = _move(call, iid, "CONTAINED", status_notes="Threat contained, investigating scope",
                        containment_actions=["Isolated affected systems", "Reset compromised credentials"])  # fmt: skip
    assert status == 200, got
    assert got["contained_at"] == "2024-01-15T10:30:00.000Z" and got["mttr_minutes"] == 30.0
    assert got["updated_at"] == got["contained_at"]
    for step in ("ERADICATED", "RECOVERED"):
        clock.advance(minutes=15)
        assert _move(call, iid, step)[0] == 200
    clock.advance(minutes=15)
    status, got = _move(call, iid, "CLOSED", status_notes="post-mortem done",
                        containment_actions=["Reset compromised credentials", "Rotated the API keys"])  # fmt: skip
    assert status == 200 and got["status"] == "CLOSED", got
    assert got["closed_at"] == "2024-01-15T11:15:00.000Z" and got["time_to_close_minutes"] == 75.0
    assert got["mttr_minutes"] == 30.0  # containment is measured once
    assert got["containment_actions"] == [
        "Isolated affected systems", "Reset compromised credentials", "Rotated the API keys",
    ]  # fmt: skip
    timeline = got["timeline"]
    assert [e["status"] for e in timeline] == [
        "OPEN", "INVESTIGATING", "CONTAINED", "ERADICATED", "RECOVERED", "CLOSED",
    ]  # fmt: skip
    assert [e["action"] for e in timeline] == [
        "Incident created", "Investigation started", "Threat contained", "Threat eradicated",
        "Systems recovered", "Incident closed",
    ]  # fmt: skip
    assert [e["from_status"] for e in timeline] == [
        None,
        "OPEN",
        "INVESTIGATING",
        "CONTAINED",
        "ERADICATED",
        "RECOVERED",
    ]
    assert timeline[1]["timestamp"] == "2024-01-15T10:10:00.000Z"
    # the change is the token's subject's; what the client called itself is only kept beside it
    assert timeline[1]["updated_by"] == incident["created_by"] and timeline[1]["reported_by"] == "alice"
    assert timeline[2]["containment_actions"] == [
        "Isolated affected systems",
        "Reset compromised credentials",
    ]
    assert timeline[2]["notes"] == "Threat contained, investigating scope" and timeline[3]["notes"] is None
    moves = _audit(fake_ports, "security.incident.status")
    assert [(m["details"]["from_status"], m["details"]["to_status"]) for m in moves] == [
        ("OPEN", "INVESTIGATING"), ("INVESTIGATING", "CONTAINED"), ("CONTAINED", "ERADICATED"),
        ("ERADICATED", "RECOVERED"), ("RECOVERED", "CLOSED"),
    ]  # fmt: skip
    assert moves[0]["details"]["reported_by"] == "alice" and all(m["tenant_id"] == "acme" for m in moves)
    # the API call itself is in the trail too, with the incident as its target
    calls = [r for r in fake_ports.history.records.values() if r.stream == "audit" and r.target_id == iid]
    assert {r.data["action"] for r in calls} >= {"PUT /api/v1/security/incidents/<incident_id>/status"}


def test_forward_moves_may_skip_steps(call: Any, fake_ports: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch, datetime(2024, 6, 1, 8, 0, tzinfo=UTC))
    iid = _create(call)["incident_id"]
    clock.advance(minutes=45, seconds=30)
    status, got = _move(call, iid, "CONTAINED")
    assert status == 200 and [e["status"] for e in got["timeline"]] == ["OPEN", "CONTAINED"]
    assert got["mttr_minutes"] == 45.5
    # ERADICATED straight away is containment too
    other = _create(call)["incident_id"]
    clock.advance(minutes=5)
    assert _move(call, other, "ERADICATED")[1]["mttr_minutes"] == 5.0
    # a close without containment (a false alarm) has no MTTR
    third = _create(call)["incident_id"]
    clock.advance(minutes=2)
    status, closed = _move(call, third, "CLOSED", status_notes="false positive")
    assert status == 200 and closed["mttr_minutes"] is None and closed["time_to_close_minutes"] == 2.0


def test_a_move_back_needs_a_reason(call: Any, fake_ports: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch, datetime(2024, 2, 1, 9, 0, tzinfo=UTC))
    iid = _create(call)["incident_id"]
    clock.advance(minutes=12)
    assert _move(call, iid, "CONTAINED")[0] == 200
    for notes in (None, "", "   "):
        status, got = _move(call, iid, "INVESTIGATING", **({} if notes is None else {"status_notes": notes}))
        assert status == 409 and got["error"]["code"] == "invalid_state", got
        assert "moves back from CONTAINED to INVESTIGATING only with a reason" in got["error"]["message"]
        assert got["error"]["details"]["required"] == "status_notes"
    clock.advance(minutes=30)
    status, got = _move(call, iid, "INVESTIGATING", status_notes="a second host is compromised")
    assert status == 200 and got["status"] == "INVESTIGATING", got
    back = got["timeline"][-1]
    assert back["action"] == "Moved back from CONTAINED to INVESTIGATING"
    assert back["notes"] == "a second host is compromised" and back["from_status"] == "CONTAINED"
    # MTTR is created -> first containment: contained again later, it stays
    clock.advance(minutes=30)
    status, got = _move(call, iid, "CONTAINED")
    assert status == 200 and got["mttr_minutes"] == 12.0 and got["contained_at"] == "2024-02-01T09:12:00.000Z"
    assert [e["status"] for e in got["timeline"]] == ["OPEN", "CONTAINED", "INVESTIGATING", "CONTAINED"]
    (backward,) = [m for m in _audit(fake_ports, "security.incident.status") if m["details"]["backward"]]
    assert backward["details"]["notes"] == "a second host is compromised"


def test_the_same_status_again_is_a_409(call: Any, fake_ports: Any) -> None:
    iid = _create(call)["incident_id"]
    assert _move(call, iid, "INVESTIGATING")[0] == 200
    status, got = _move(call, iid, "INVESTIGATING", status_notes="still at it")
    assert status == 409 and "already INVESTIGATING" in got["error"]["message"], got


def test_closed_is_final(call: Any, fake_ports: Any) -> None:
    iid = _create(call)["incident_id"]
    assert _move(call, iid, "CLOSED", status_notes="duplicate of SEC-1")[0] == 200
    for wanted in ("INVESTIGATING", "RECOVERED", "CLOSED"):
        status, got = _move(call, iid, wanted, status_notes="reopen please")
        assert status == 409 and "CLOSED" in got["error"]["message"], got
    status, got = call("GET", f"{S}/{iid}", **ANALYST)
    assert got["status"] == "CLOSED" and len(got["timeline"]) == 2
    assert len(_audit(fake_ports, "security.incident.status")) == 1


def test_a_concurrent_change_is_reread_and_judged_again(
    call: Any, fake_ports: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two people close the same incident at once: one closes it, the other gets the 409 of a
    closed incident, not a second CLOSED entry."""
    iid = _create(call)["incident_id"]
    store = fake_ports.store
    real = store.update
    raced: list[int] = []

    def racing(kind: str, record_id: str, changes: Any, expected_revision: Any = None) -> Any:
        if kind == incidents.KIND and not raced:
            raced.append("racing")
            other = incidents.change_status(
                fake_ports, OTHER_ANALYST, iid, SecurityIncidentStatusUpdate(status="CLOSED")
            )
            raced[0] = other["status"]
        return real(kind, record_id, changes, expected_revision)

    monkeypatch.setattr(store, "update", racing)
    status, got = _move(call, iid, "CLOSED")
    assert raced == ["CLOSED"] and status == 409 and "CLOSED" in got["error"]["message"], got
    assert [e["status"] for e in store.get(incidents.KIND, iid)["timeline"]] == ["OPEN", "CLOSED"]


def test_a_long_timeline_keeps_its_first_and_latest_entries(call: Any, fake_ports: Any) -> None:
    iid = _create(call)["incident_id"]
    for i in range(incidents.MAX_TIMELINE + 5):
        wanted = "CONTAINED" if i % 2 == 0 else "INVESTIGATING"
        assert _move(call, iid, wanted, status_notes=f"round {i}")[0] == 200
    got = call("GET", f"{S}/{iid}", **ANALYST)[1]
    assert len(got["timeline"]) == incidents.MAX_TIMELINE and got["timeline_dropped"] == 6
    assert got["timeline"][0]["action"] == "Incident created"
    assert got["timeline"][-1]["notes"] == f"round {incidents.MAX_TIMELINE + 4}"


# --- listing --------------------------------------------------------------------------------------


def _incidents(call: Any, query: str = "", **who: Any) -> dict:
    status, got = call("GET", S + query, **(who or ANALYST))
    assert status == 200, got
    return got  # type: ignore[no-any-return]


def test_the_list_filters_pages_and_sums_up_with_the_mean_mttr(
    call: Any, fake_ports: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch, datetime(2024, 4, 1, 12, 0, tzinfo=UTC))
    made = []
    for sev, kind in (("CRITICAL", "DATA_BREACH"), ("HIGH", "MALWARE"), ("HIGH", "DDOS"), ("LOW", "DDOS")):
        made.append(_create(call, {**BODY, "severity": sev, "incident_type": kind})["incident_id"])
        clock.advance(seconds=1)
    clock.advance(minutes=10)
    _move(call, made[0], "CONTAINED")  # 10 minutes
    clock.advance(minutes=20)
    _move(call, made[1], "RECOVERED")  # 30 minutes
    _move(call, made[3], "CLOSED", status_notes="noise")  # no MTTR
    got = _incidents(call)
    assert [i["incident_id"] for i in got["incidents"]] == made[::-1]  # newest first
    assert got["summary"] == {
        "total": 4, "open": 1, "investigating": 0, "contained": 1, "eradicated": 0, "recovered": 1,
        "closed": 1, "critical": 1, "high": 2, "medium": 0, "low": 1,
        "contained_incidents": 2, "mean_mttr_minutes": 20.06,  # (10.07 + 30.05) / 2: created a second apart
    }  # fmt: skip
    assert [i["mttr_minutes"] for i in got["incidents"]] == [None, None, 30.05, 10.07]
    assert got["pagination"] == {"page": 1, "pageSize": 20, "totalItems": 4, "totalPages": 1,
                                 "hasNext": False, "hasPrevious": False}  # fmt: skip
    ddos = _incidents(call, "?incident_type=DDOS")
    assert {i["incident_id"] for i in ddos["incidents"]} == {made[2], made[3]} and ddos["summary"][
        "total"
    ] == 2
    assert ddos["summary"]["mean_mttr_minutes"] is None and ddos["summary"]["contained_incidents"] == 0
    high = _incidents(call, "?severity=HIGH&status=RECOVERED")
    assert [i["incident_id"] for i in high["incidents"]] == [made[1]] and high["summary"][
        "mean_mttr_minutes"
    ] == 30.05
    second = _incidents(call, "?page=2&pageSize=3")
    assert [i["incident_id"] for i in second["incidents"]] == [made[0]]
    assert second["pagination"]["hasPrevious"] and not second["pagination"]["hasNext"]


# --- scope and permissions ------------------------------------------------------------------------


def test_a_tenant_sees_and_changes_only_its_own_incidents(call: Any, fake_ports: Any) -> None:
    mine = _create(call)["incident_id"]
    theirs = _create(call, tenant="initech", role="security_analyst")["incident_id"]
    assert [i["incident_id"] for i in _incidents(call)["incidents"]] == [mine]
    assert call("GET", f"{S}/{theirs}", **ANALYST)[0] == 404
    status, got = _move(call, theirs, "INVESTIGATING")
    assert status == 404 and "not found" in got["error"]["message"]
    assert fake_ports.store.get(incidents.KIND, theirs)["status"] == "OPEN"
    assert call("GET", f"{S}?tenant_id=initech", **ANALYST)[0] == 404
    # naming another tenant in the body is refused the same way
    assert call("POST", f"{S}/create", {**BODY, "tenant_id": "initech"}, **ANALYST)[0] == 404
    # a platform admin sees and works every tenant's, and narrows with tenant_id
    platform = {"role": "admin", "tenant": None}
    assert {i["incident_id"] for i in _incidents(call, **platform)["incidents"]} == {mine, theirs}
    assert [i["incident_id"] for i in _incidents(call, "?tenant_id=initech", **platform)["incidents"]] == [
        theirs
    ]
    assert call("GET", f"{S}/{theirs}", **platform)[0] == 200
    assert _move(call, theirs, "INVESTIGATING", **platform)[0] == 200
    made = _create(call, {**BODY, "tenant_id": "initech"}, **platform)
    assert made["tenant_id"] == "initech"
    assert made["incident_id"] in {
        i["incident_id"] for i in _incidents(call, tenant="initech", role="security_analyst")["incidents"]
    }


@pytest.mark.parametrize("role", ["viewer", "operator", "user", "compliance_officer"])
def test_roles_without_security_permissions_get_403(call: Any, fake_ports: Any, role: str) -> None:
    iid = _create(call)["incident_id"]
    for method, path, body in (
        ("GET", S, None), ("GET", f"{S}/{iid}", None), ("POST", f"{S}/create", BODY),
        ("PUT", f"{S}/{iid}/status", {"status": "INVESTIGATING"}),
    ):  # fmt: skip
        status, got = call(method, path, body, role=role, tenant="acme")
        assert status == 403 and got["error"]["code"] == "forbidden", (method, path, got)
    assert fake_ports.store.get(incidents.KIND, iid)["status"] == "OPEN"


def test_a_security_analyst_and_a_tenant_admin_may_work_incidents(call: Any, fake_ports: Any) -> None:
    iid = _create(call, role="tenant_admin", tenant="acme")["incident_id"]
    assert _move(call, iid, "INVESTIGATING")[0] == 200
    assert call("GET", f"{S}/{iid}", role="tenant_admin", tenant="acme")[0] == 200


def test_without_a_token_it_is_401(call: Any, fake_ports: Any) -> None:
    assert call("GET", S, role=None)[0] == 401
    assert call("POST", f"{S}/create", BODY, role=None)[0] == 401


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"incident_type": "PHISHING"}, "incident_type"),
        ({"severity": "SEVERE"}, "severity"),
        ({"description": ""}, "description"),
        ({"affected_users": -1}, "affected_users"),
        ({"affected_systems": ["x" * 201]}, "affected_systems"),
        ({"incidentType": "MALWARE"}, "incidentType"),
    ],
)
def test_a_bad_create_is_422_and_creates_nothing(
    call: Any, fake_ports: Any, change: dict, field: str
) -> None:
    status, got = call("POST", f"{S}/create", {**BODY, **change}, **ANALYST)
    assert status == 422 and got["error"]["code"] == "validation_error", got
    assert any(str(d["field"]).startswith(field) for d in got["error"]["details"]), got
    assert not fake_ports.store.every(incidents.KIND)
    assert fake_ports.store.get(incidents.YEAR_KIND, str(datetime.now(UTC).year)) is None


@pytest.mark.parametrize(
    "body",
    [{"status": "RESOLVED"}, {"status": "OPEN"}, {}, {"status": "CONTAINED", "containment_actions": ["a"] * 11},
     {"status": "CONTAINED", "status_notes": "x" * 2001}],
    ids=["unknown status", "OPEN again", "no status", "too many actions", "long notes"],
)  # fmt: skip
def test_a_bad_status_update_is_422(call: Any, fake_ports: Any, body: dict) -> None:
    iid = _create(call)["incident_id"]
    status, got = call("PUT", f"{S}/{iid}/status", body, **ANALYST)
    assert status == 422 and got["error"]["code"] == "validation_error", got
    assert len(fake_ports.store.get(incidents.KIND, iid)["timeline"]) == 1


def test_bad_filters_are_422_and_unknown_ids_404(call: Any, fake_ports: Any) -> None:
    assert call("GET", f"{S}/not-an-id", **ANALYST)[0] == 404  # cannot be an id: names nothing
    assert call("GET", f"{S}?status=RESOLVED", **ANALYST)[0] == 422
    assert call("GET", f"{S}?incident_type=PHISHING", **ANALYST)[0] == 422
    assert call("GET", f"{S}/secinc-000000000000", **ANALYST)[0] == 404
    assert _move(call, "secinc-000000000000", "CONTAINED")[0] == 404


# --- notification -------------------------------------------------------------------------------


class RecordingNotifier(Notifier):
    """A notifier that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], Message]] = []

    def send(self, channel_type: str, configuration: dict[str, Any], message: Message) -> str:
        self.sent.append((channel_type, configuration, message))
        return "sent"


def test_the_tenants_channels_hear_of_a_new_incident_and_of_its_close(call: Any, fake_ports: Any) -> None:
    fake_ports.notifier = RecordingNotifier()
    channel = {
        "type": "WEBHOOK", "name": "security hook",
        "configuration": {"url": "http://127.0.0.1:9/hook", "secret": "whsec-0123456789abcdef"},
    }  # fmt: skip
    status, made = call(
        "POST", "/api/v1/monitoring/notifications/channels", channel, role="operator", tenant="acme"
    )
    assert status == 201, made
    call("POST", "/api/v1/monitoring/notifications/channels", {**channel, "name": "other"}, role="operator",
         tenant="initech")  # fmt: skip
    fake_ports.drain()
    fake_ports.notifier.sent.clear()
    incident = _create(call, {**BODY, "severity": "CRITICAL"})
    fake_ports.drain()
    ((kind, _, sent),) = fake_ports.notifier.sent
    assert kind == "WEBHOOK" and sent.event == "triggered" and sent.severity == "CRITICAL"
    assert incident["incident_number"] in sent.title and "UNAUTHORIZED_ACCESS" in sent.title
    assert sent.text.startswith("Unauthorized access attempt detected")
    assert _move(call, incident["incident_id"], "CONTAINED")[0] == 200
    fake_ports.drain()
    assert len(fake_ports.notifier.sent) == 1  # a step on the way is not news to a channel
    assert _move(call, incident["incident_id"], "CLOSED")[0] == 200
    fake_ports.drain()
    assert [s.event for _, _, s in fake_ports.notifier.sent] == ["triggered", "resolved"]
    assert fake_ports.notifier.sent[-1][2].title.endswith("resolved")
