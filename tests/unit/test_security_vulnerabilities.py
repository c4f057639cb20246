"""GET/PUT /api/v1/security/vulnerabilities with the ports faked: a fake SqlTarget answers the
version and pg_extension reads, so the match, severities, deadlines, overdue count, scope,
status updates, 422s and `pgfleet cve import` are seen as a user sees them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pgfleet.domains.security import cves, vulnerabilities, vulnerability_sql
from pgfleet.domains.security.cves import ServerComponents

V = "/api/v1/security/vulnerabilities"
ACME = "pgi-0123456789ab"
GLOBEX = "pgi-00000000000f"


class FakeSession:
    def __init__(self, server: dict[str, Any]) -> None:
        self.server = server

    def fetch_one(self, query: Any, params: Any = None) -> tuple[Any, ...] | None:
        rows = self.fetch_all(query, params)
        return rows[0] if rows else None

    def fetch_all(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        if query == vulnerability_sql.VERSION:
            return [(self.server["num"], self.server["version"])]
        if query == vulnerability_sql.DATABASES:
            return [("app",), ("postgres",)]
        if query == vulnerability_sql.EXTENSIONS:
            return list(self.server["extensions"])
        raise AssertionError(f"unexpected statement {query!r}")


class FakeSql:
    def __init__(self) -> None:
        self.servers: dict[str, dict[str, Any]] = {}

    @contextmanager
    def session(self, server_id: str, **kwargs: Any) -> Iterator[FakeSession]:
        yield FakeSession(self.servers[server_id])


@pytest.fixture
def sql(fake_ports: Any) -> FakeSql:
    fake = FakeSql()
    fake_ports.sql = fake
    fake.servers[ACME] = {"num": 150004, "version": "15.4 (Debian)", "extensions": [("plpgsql", "1.0")]}
    fake.servers[GLOBEX] = {"num": 180004, "version": "18.4", "extensions": [("plpgsql", "1.0")]}
    for rid, tenant in ((ACME, "acme"), (GLOBEX, "globex")):
        fake_ports.store.create("instance", {
            "id": rid, "tenant_id": tenant, "name": rid, "status": "running", "created_at": "2026-01-01T00:00:00Z",
            "username": "app_user", "database": "app", "endpoint": {"host": "127.0.0.1", "port": 6543},
        })  # fmt: skip
    fake_ports.engine.component_versions = lambda: {"pgbouncer": "1.18.0", "pgbackrest": "2.45"}
    return fake


def _expected(num: int, extensions: set[str] = frozenset()) -> set[str]:  # type: ignore[assignment]
    """The PostgreSQL CVEs of the shipped dataset a server of `num` should show."""
    major, minor = cves.pg_version(num)
    return {
        c.cve_id for c in cves.load(Path("/nonexistent")).by_component("postgresql")
        if c.fixed_in.get(major, -1) > minor and (c.extension is None or c.extension in extensions)
    }  # fmt: skip


def test_shipped_dataset_is_sourced_and_valid() -> None:
    raw = json.loads(cves.shipped_path().read_text())
    data = cves.parse(raw)
    assert data.retrieved == "2026-12-04" and data.source
    assert len(data.cves) >= 10 and all(c.sources for c in data.cves)
    assert data.eol[13].isoformat() == "2025-11-13" and data.eol[18].year == 2030


def test_severity_bands_and_deadlines() -> None:
    assert [cves.severity_of(s) for s in (9.8, 9.0, 8.8, 7.0, 6.9, 4.0, 3.7, None)] == [
        "CRITICAL", "CRITICAL", "HIGH", "HIGH", "MEDIUM", "MEDIUM", "LOW", None,
    ]  # fmt: skip
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert vulnerabilities.deadline_of(start, "CRITICAL") == start + timedelta(days=7)
    assert vulnerabilities.deadline_of(start, "HIGH") == start + timedelta(days=30)
    assert vulnerabilities.deadline_of(start, "MEDIUM") == start + timedelta(days=90)
    assert vulnerabilities.deadline_of(start, "LOW") == start + timedelta(days=180)
    assert vulnerabilities.deadline_of(start, None) is None


def test_match_compares_the_minor_numerically_and_honours_extensions() -> None:
    data = cves.load(Path("/nonexistent"))
    # 15.9 < 15.18 numerically (a string compare would say otherwise)
    old = cves.match(data, ServerComponents("pgi-1", "t", 150009, "15.9"))
    assert {m.cve.cve_id for m in old} == _expected(150009)
    assert "CVE-2026-6473" in {m.cve.cve_id for m in old} and "CVE-2024-7348" not in {
        m.cve.cve_id for m in old
    }
    patches = {m.cve.cve_id: m.patch_version for m in old}
    assert patches["CVE-2026-6473"] == "15.18" and patches["CVE-2025-1094"] == "15.11"  # each CVE its own fix
    assert "CVE-2024-10976" not in patches  # fixed in 15.9 itself
    assert "CVE-2026-6637" not in {m.cve.cve_id for m in old}  # refint not installed
    with_refint = cves.match(data, ServerComponents("pgi-1", "t", 150009, "15.9", {"refint": "1.0"}))
    assert "CVE-2026-6637" in {m.cve.cve_id for m in with_refint}
    assert cves.match(data, ServerComponents("pgi-1", "t", 150018, "15.18")) == []
    older = {m.cve.cve_id for m in cves.match(data, ServerComponents("pgi-1", "t", 150007, "15.7"))}
    assert "CVE-2024-7348" in older
    # PostgreSQL 17-only CVE, and a major the entry does not list
    assert "CVE-2026-6476" in {
        m.cve.cve_id for m in cves.match(data, ServerComponents("p", "t", 170009, "17.9"))
    }
    assert "CVE-2026-6476" not in {
        m.cve.cve_id for m in cves.match(data, ServerComponents("p", "t", 160001, "16.1"))
    }
    bouncer = cves.match(data, ServerComponents("p", "t", 180004, "18.4", tools={"pgbouncer": "1.18.0"}))
    assert {m.cve.cve_id for m in bouncer} == {"CVE-2025-2291", "CVE-2026-6664", "CVE-2026-6666"}
    assert cves.match(data, ServerComponents("p", "t", 180004, "18.4", tools={"pgbouncer": "1.25.2"})) == []


def test_get_lists_findings_with_deadlines_eol_and_summary(call: Any, sql: FakeSql, fake_ports: Any) -> None:
    status, body = call("GET", V, role="security_analyst", tenant="acme")
    assert status == 200, body
    found = body["vulnerabilities"]
    assert {v["cve_id"] for v in found} == _expected(150004)  # no pooler: no PgBouncer finding
    assert {v["target_id"] for v in found} == {ACME}  # confined to acme's servers
    top = next(v for v in found if v["cve_id"] == "CVE-2026-6473")
    assert top["severity"] == "HIGH" and top["cvss_score"] == 8.8 and top["remediation_status"] == "OPEN"
    assert (
        top["affected_component"] == f"PostgreSQL 15.4 on {ACME}"
        and top["patch_version"] == "PostgreSQL 15.18"
    )
    discovered = datetime.fromisoformat(top["discovery_date"].replace("Z", "+00:00"))
    deadline = datetime.fromisoformat(top["remediation_deadline"].replace("Z", "+00:00"))
    assert deadline - discovered == timedelta(days=30) and not top["overdue"]
    assert top["compensating_controls"] == [] and "CVSS 8.8" in top["business_impact"]
    summary = body["summary"]
    assert summary["total_vulnerabilities"] == len(found) and summary["overdue_remediations"] == 0
    assert summary["high"] == sum(1 for v in found if v["severity"] == "HIGH")
    assert body["eol"] == [{"target_id": ACME, "major": 15, "server_version": "15.4", "eol_date": "2027-11-11",
                            "past_eol": False, "days_to_eol": body["eol"][0]["days_to_eol"]}]  # fmt: skip
    assert {"target_id": ACME, "component": "pgbackrest", "version": "2.45"} in body["components"]
    # the same finding keeps its id and discovery date on the next scan
    again = {
        v["vulnerability_id"]: v["discovery_date"]
        for v in call("GET", V, role="security_analyst")[1]["vulnerabilities"]
    }
    assert again[top["vulnerability_id"]] == top["discovery_date"]


def test_filters_and_bad_enums(call: Any, sql: FakeSql) -> None:
    _, body = call("GET", f"{V}?severity=MEDIUM", role="security_analyst")
    assert body["vulnerabilities"] and {v["severity"] for v in body["vulnerabilities"]} == {"MEDIUM"}
    _, body = call("GET", f"{V}?component=pgbouncer", role="security_analyst")
    assert body["vulnerabilities"] == []
    for bad in ("severity=SEVERE", "status=CLOSED"):
        status, err = call("GET", f"{V}?{bad}", role="security_analyst")
        assert status == 422, err


def test_pooler_brings_pgbouncer_findings(call: Any, sql: FakeSql, fake_ports: Any) -> None:
    from pgfleet.ports.pooler import PoolerSpec

    fake_ports.pooler.configure(
        PoolerSpec(ACME, 6500, "127.0.0.1", 6543, "app", "transaction", 10, 100, 0, "u", "p", "q")
    )
    _, body = call("GET", f"{V}?component=pgbouncer", role="security_analyst")
    assert {v["cve_id"] for v in body["vulnerabilities"]} == {
        "CVE-2025-2291",
        "CVE-2026-6664",
        "CVE-2026-6666",
    }
    scored = next(v for v in body["vulnerabilities"] if v["cve_id"] == "CVE-2025-2291")
    assert scored["severity"] == "HIGH" and scored["patch_version"] == "PgBouncer 1.24.1"
    unscored = next(v for v in body["vulnerabilities"] if v["cve_id"] == "CVE-2026-6664")
    assert unscored["severity"] is None and unscored["remediation_deadline"] is None
    assert (
        unscored["patch_version"] == "PgBouncer 1.25.2" and "no CVSS v3 score" in unscored["business_impact"]
    )
    assert body["summary"]["unscored"] == 2


def test_overdue_and_patched(call: Any, sql: FakeSql, fake_ports: Any) -> None:
    call("GET", V, role="security_analyst")
    old = (datetime.now(UTC) - timedelta(days=31)).isoformat(timespec="seconds").replace("+00:00", "Z")
    for r in fake_ports.store.every(vulnerabilities.KIND, tenant_id="acme"):
        fake_ports.store.update(vulnerabilities.KIND, r["id"], {"discovery_date": old})
    _, body = call("GET", V, role="security_analyst")
    overdue = {v["cve_id"] for v in body["vulnerabilities"] if v["overdue"]}
    assert overdue == {v["cve_id"] for v in body["vulnerabilities"] if v["severity"] in ("HIGH", "CRITICAL")}
    assert body["summary"]["overdue_remediations"] == len(overdue) > 0
    # the server is patched: every finding turns PATCHED, none is overdue
    sql.servers[ACME]["num"], sql.servers[ACME]["version"] = 150018, "15.18"
    _, body = call("GET", V, role="security_analyst")
    assert {v["remediation_status"] for v in body["vulnerabilities"]} == {"PATCHED"}
    assert body["summary"]["overdue_remediations"] == 0
    _, body = call("GET", f"{V}?status=OPEN", role="security_analyst")
    assert body["vulnerabilities"] == []


def test_scope_and_permissions(call: Any, sql: FakeSql) -> None:
    status, body = call("GET", f"{V}?targetId={GLOBEX}", role="security_analyst", tenant="acme")
    assert status == 404, body
    status, body = call("GET", V, role="admin", tenant=None)
    assert status == 200 and {v["target_id"] for v in body["vulnerabilities"]} == {ACME}  # 18.4 has none
    assert {e["target_id"] for e in body["eol"]} == {ACME, GLOBEX}
    assert call("GET", V, role="viewer")[0] == 403


def test_update_status_is_audited_and_validated(call: Any, sql: FakeSql, fake_ports: Any) -> None:
    _, body = call("GET", V, role="security_analyst")
    vid = body["vulnerabilities"][0]["vulnerability_id"]
    status, err = call("PUT", f"{V}/{vid}", {"remediation_status": "MITIGATED"}, role="security_analyst")
    assert status == 422 and "compensating" in err["error"]["message"]
    assert call("PUT", f"{V}/{vid}", {"remediation_status": "PATCHED"}, role="security_analyst")[0] == 422
    assert call("PUT", f"{V}/{vid}", {"remediation_status": "IN_PROGRESS"}, role="viewer")[0] == 403
    body = {"remediation_status": "MITIGATED", "compensating_controls": ["pg_hba.conf allows scram-sha-256 only"],
            "notes": "upgrade window on Friday", "business_impact": "Billing database: customer data"}  # fmt: skip
    status, view = call("PUT", f"{V}/{vid}", body, role="security_analyst")
    assert status == 200, view
    assert (
        view["remediation_status"] == "MITIGATED"
        and view["compensating_controls"] == body["compensating_controls"]
    )
    assert view["business_impact"] == body["business_impact"] and not view["overdue"]
    events = [
        r.data
        for r in fake_ports.history.records.values()
        if r.data.get("action") == "security.vulnerability.update"
    ]
    assert events and events[-1]["details"]["after"]["remediation_status"] == "MITIGATED"
    _, listed = call("GET", f"{V}?status=MITIGATED", role="security_analyst")
    assert [v["vulnerability_id"] for v in listed["vulnerabilities"]] == [vid]
    # another tenant's token, and an unknown id: 404
    assert (
        call(
            "PUT",
            f"{V}/{vid}",
            {"remediation_status": "IN_PROGRESS"},
            role="security_analyst",
            tenant="globex",
        )[0]
        == 404
    )
    assert (
        call(
            "PUT", f"{V}/vul-0000000000000000", {"remediation_status": "IN_PROGRESS"}, role="security_analyst"
        )[0]
        == 404
    )


def test_import_replaces_the_dataset_and_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    raw = json.loads(cves.shipped_path().read_text())
    raw["cves"] = [c for c in raw["cves"] if c["cve_id"] == "CVE-2026-6473"]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(raw))
    data = cves.import_file(good, home)
    assert [c.cve_id for c in cves.load(home).cves] == ["CVE-2026-6473"] and data.origin.endswith(
        "dataset.json"
    )
    bad = dict(raw, cves=[dict(raw["cves"][0], fixed_in={"15": "16.1"})])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(Exception, match=r"fixed_in\['15'\]"):
        cves.import_file(tmp_path / "bad.json", home)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        cves.import_file(tmp_path / "broken.json", home)
    with pytest.raises(Exception, match="source"):
        cves.parse(dict(raw, source=[]))
    assert [c.cve_id for c in cves.load(home).cves] == ["CVE-2026-6473"]


def test_cve_import_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pgfleet import cli
    from pgfleet.core import settings
    from pgfleet.domains import security

    if not hasattr(security, "import_cve_dataset"):
        pytest.skip(
            "pgfleet.domains.security must export import_cve_dataset (= cves.import_file) for the CLI"
        )
    monkeypatch.setenv("PGFLEET_HOME", str(tmp_path))
    settings.get_settings.cache_clear()
    try:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"source": "x", "retrieved": "2026-12-03", "cves": [{"cve_id": "nope"}]}))
        assert cli.main(["cve", "import", str(bad)]) == 2
        assert "nothing changed" in capsys.readouterr().err and not (tmp_path / cves.IMPORTED).exists()
        assert cli.main(["cve", "import", str(cves.shipped_path())]) == 0
        assert "imported" in capsys.readouterr().out and (tmp_path / cves.IMPORTED).is_file()
    finally:
        settings.get_settings.cache_clear()
