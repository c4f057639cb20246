"""Issue 18's vulnerability scan on the real local stack: a PostgreSQL 15 instance (Debian's
binaries) is listed with exactly the dataset's CVEs fixed after its installed minor (read from
the server itself, so a recent Debian minor is fine), its EOL date, and the real versions of
pgBackRest; a finding is set MITIGATED and stays so; bad enums are 422s; another tenant's
token sees none of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgfleet.domains.security import cves
from tests.helpers import LocalStack, running_stack

V = "/api/v1/security/vulnerabilities"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-vulns-") as s:
        yield s


@pytest.fixture(scope="module")
def instance(stack: LocalStack) -> dict[str, Any]:
    token = stack.token("operator", "acme")
    status, body = stack.request(
        "POST", "/api/v1/postgres/single", {"name": "scanned", "version": "15"}, token
    )
    assert status == 202, body
    stack.wait_created(body["operation_id"], token)
    return body


def test_pg15_lists_the_cves_fixed_after_its_minor(stack: LocalStack, instance: dict[str, Any]) -> None:
    with psycopg.connect(instance["credentials"]["uri"], connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_catalog.current_setting('server_version_num')::int").fetchone()
    assert row is not None
    num = int(row[0])
    major, minor = cves.pg_version(num)
    assert major == 15
    dataset = cves.load(stack.home)
    expected = {c.cve_id for c in dataset.by_component("postgresql")
                if c.fixed_in.get(15, -1) > minor and c.extension is None}  # fmt: skip
    analyst = stack.token("security_analyst", "acme")
    status, body = stack.request("GET", f"{V}?targetId={instance['id']}", None, analyst)
    assert status == 200, body
    assert body["problems"] == []
    listed = {v["cve_id"] for v in body["vulnerabilities"] if v["component"] == "postgresql"}
    assert listed == expected
    for v in body["vulnerabilities"]:
        assert v["target_id"] == instance["id"] and v["remediation_status"] == "OPEN"
    assert body["eol"] == [{"target_id": instance["id"], "major": 15, "server_version": f"15.{minor}",
                            "eol_date": "2027-11-11", "past_eol": False,
                            "days_to_eol": body["eol"][0]["days_to_eol"]}]  # fmt: skip
    tools = {c["component"]: c["version"] for c in body["components"]}
    assert tools["postgresql"] == f"15.{minor}" and tools["pgbackrest"].startswith("2.")
    assert body["summary"]["total_vulnerabilities"] == len(body["vulnerabilities"])
    assert body["dataset"]["retrieved"] == dataset.retrieved

    for bad in ("severity=URGENT", "status=DONE"):
        assert stack.request("GET", f"{V}?{bad}", None, analyst)[0] == 422
    other = stack.token("security_analyst", "globex")
    status, theirs = stack.request("GET", V, None, other)
    assert status == 200 and theirs["vulnerabilities"] == [] and theirs["eol"] == []
    assert stack.request("GET", f"{V}?targetId={instance['id']}", None, other)[0] == 404

    if body["vulnerabilities"]:
        vid = body["vulnerabilities"][0]["vulnerability_id"]
        change = {
            "remediation_status": "MITIGATED",
            "compensating_controls": ["network restricted to the app subnet"],
        }
        status, view = stack.request("PUT", f"{V}/{vid}", change, analyst)
        assert status == 200 and view["remediation_status"] == "MITIGATED", view
        _, again = stack.request("GET", f"{V}?status=MITIGATED", None, analyst)
        assert [v["vulnerability_id"] for v in again["vulnerabilities"]] == [vid]


def test_an_imported_advisory_newer_than_the_minor_is_found_tracked_and_patched_away(
    stack: LocalStack, instance: dict[str, Any], tmp_path: Any
) -> None:
    """The installed 15.x may be newer than every fix in the shipped dataset: a dataset whose
    fix of one CVE is the next 15.x minor (a test file, imported by `pgfleet cve import`) makes
    the live server vulnerable to it; re-importing the shipped dataset patches it away."""
    import json

    with psycopg.connect(instance["credentials"]["uri"], connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_catalog.current_setting('server_version_num')::int").fetchone()
    assert row is not None
    _, minor = cves.pg_version(int(row[0]))
    shipped = json.loads(cves.shipped_path().read_text())
    entry = next(c for c in shipped["cves"] if c["component"] == "postgresql" and "15" in c["fixed_in"]
                 and not c.get("extension"))  # fmt: skip
    entry["fixed_in"]["15"] = f"15.{minor + 1}"
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(shipped))
    assert "imported" in stack.cli("cve", "import", str(newer)).lower()

    analyst = stack.token("security_analyst", "acme")
    status, body = stack.request("GET", f"{V}?targetId={instance['id']}", None, analyst)
    assert status == 200, body
    (found,) = [v for v in body["vulnerabilities"] if v["cve_id"] == entry["cve_id"]]
    assert found["patch_version"] == f"PostgreSQL 15.{minor + 1}" or str(minor + 1) in found["patch_version"]
    assert found["remediation_status"] == "OPEN" and found["remediation_deadline"] is not None
    change = {"remediation_status": "MITIGATED", "compensating_controls": ["only the app subnet may connect"]}
    status, view = stack.request("PUT", f"{V}/{found['vulnerability_id']}", change, analyst)
    assert status == 200 and view["remediation_status"] == "MITIGATED", view
    assert (
        stack.request("PUT", f"{V}/{found['vulnerability_id']}", change, stack.token("viewer", "acme"))[0]
        == 403
    )

    stack.cli("cve", "import", str(cves.shipped_path()))
    status, body = stack.request("GET", f"{V}?targetId={instance['id']}&status=PATCHED", None, analyst)
    assert status == 200, body
    assert [v["cve_id"] for v in body["vulnerabilities"]] == [entry["cve_id"]], body
