"""One Page helper and one CamelModel: the pagination object, camelCase on the wire and
snake_case in storage, and paging in the store (here its fake; the DynamoDB adapter in
tests/integration/test_store_paging.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pgfleet.core.paging import Page, PageQuery, Pagination
from pgfleet.core.wire import CamelModel, StrictCamelModel
from pgfleet.ports.metadata import Range
from tests.unit.fakes import FakeStore

ALERTS = "/api/v1/monitoring/alerts"


class Sample(CamelModel):
    backup_id: str
    size_bytes: int | None = None


class SampleBody(StrictCamelModel):
    note_text: str


def test_pagination_is_the_seeds_object():
    assert Page(["c"], total_items=21, page=3, page_size=10).pagination.model_dump() == {
        "page": 3, "pageSize": 10, "totalItems": 21, "totalPages": 3, "hasNext": False, "hasPrevious": True,
    }  # fmt: skip
    middle = Page.of([], 45, PageQuery(page=2, page_size=20)).pagination
    assert (middle.total_pages, middle.has_next, middle.has_previous) == (3, True, True)
    empty = Pagination.of(0, 1, 20)
    assert (empty.total_pages, empty.has_next, empty.has_previous) == (1, False, False)
    with pytest.raises(ValidationError):
        PageQuery(page=1, page_size=101)
    with pytest.raises(ValidationError):
        PageQuery(page=0)


def test_camel_model_is_camel_on_the_wire_and_snake_in_storage():
    sample = Sample.model_validate({"backupId": "bkp-1", "sizeBytes": 5})
    assert sample == Sample(backup_id="bkp-1", size_bytes=5)  # either spelling parses
    assert sample.model_dump() == {"backupId": "bkp-1", "sizeBytes": 5}
    assert sample.model_dump_json() == '{"backupId":"bkp-1","sizeBytes":5}'
    assert sample.to_record() == {"backup_id": "bkp-1", "size_bytes": 5}
    assert set(Sample.model_json_schema()["properties"]) == {"backupId", "sizeBytes"}
    assert SampleBody.model_validate({"noteText": "x"}).to_record() == {"note_text": "x"}
    with pytest.raises(ValidationError):
        SampleBody.model_validate({"noteText": "x", "other": 1})


def _records(store: FakeStore, count: int) -> None:
    for i in range(count):
        store.create("thing", {"id": f"t-{i:03}", "tenant_id": "a" if i % 2 else "b",
                               "created_at": f"2024-01-01T00:{i // 60:02}:{i % 60:02}.000Z",
                               "colour": ("red", "green", "blue")[i % 3], "size": i, "note": None})  # fmt: skip


def test_the_fake_store_pages_filters_and_tallies_like_the_port_says():
    store = FakeStore()
    _records(store, 30)
    items, total = store.page("thing", tenant_id="a", page=2, page_size=4)
    assert total == 15 and [r["id"] for r in items] == ["t-021", "t-019", "t-017", "t-015"]
    oldest, _ = store.page("thing", page=1, page_size=2, newest_first=False)
    assert [r["id"] for r in oldest] == ["t-000", "t-001"]
    red, total = store.page("thing", filters={"colour": "red", "size": Range(3, 12)}, page=1, page_size=10)
    assert total == 4 and [r["size"] for r in red] == [12, 9, 6, 3]
    assert store.page("thing", filters={"colour": ["red", "blue"]}, page=1, page_size=1)[1] == 20
    assert store.page("thing", filters={"colour": []}, page=1, page_size=5) == ([], 0)
    assert store.page("thing", filters={"note": None}, page=1, page_size=5)[1] == 30
    assert store.page("thing", page=9, page_size=5) == ([], 30)
    assert store.tally("thing", ("colour",), tenant_id="a", filters={"size": Range(high=9)}) == {
        "colour": {"green": 2, "blue": 1, "red": 2}
    }


def _old_alert(store: FakeStore, alert_id: str, minute: int) -> None:
    """An alert as written before alerts were stored snake_case: both spellings in one record."""
    now = f"2024-05-01T10:{minute:02}:00.000Z"
    store.create("alert", {
        "id": alert_id, "tenant_id": "acme", "parent_id": "pgi-000000000001", "created_at": now,
        "alertId": alert_id, "alertName": "StorageQuotaWarning", "severity": "MEDIUM", "status": "ACTIVE",
        "category": "capacity", "description": "storage is high", "triggeredAt": now, "acknowledgedAt": None,
        "resolvedAt": None, "assignedTo": None, "metricValue": 91.0, "threshold": 80.0,
        "actions": [{"actionType": "RAISE_QUOTA", "description": "Raise the quota", "method": "PUT",
                     "path": "/api/v1/postgres/single/pgi-000000000001/quota"}],
        "tenantId": "acme", "resourceId": "pgi-000000000001", "resourceType": "instance",
    })  # fmt: skip


def test_alerts_page_in_the_store_and_read_records_written_in_camel_case(call, fake_ports):
    for minute, alert_id in enumerate(("alert-00000000000a", "alert-00000000000b", "alert-00000000000c")):
        _old_alert(fake_ports.store, alert_id, minute)
    status, listing = call("GET", f"{ALERTS}?page=2&pageSize=2")
    assert status == 200, listing
    assert listing["pagination"] == {"page": 2, "pageSize": 2, "totalItems": 3, "totalPages": 2,
                                     "hasNext": False, "hasPrevious": True}  # fmt: skip
    [oldest] = listing["alerts"]
    assert oldest["alertId"] == "alert-00000000000a" and oldest["metricValue"] == 91.0
    assert oldest["actions"][0]["actionType"] == "RAISE_QUOTA" and oldest["resourceId"] == "pgi-000000000001"
    assert listing["summary"] == {"total": 3, "active": 3, "acknowledged": 0, "resolved": 0, "critical": 0,
                                  "high": 0, "medium": 3, "low": 0}  # fmt: skip
    body = {"acknowledgmentNote": "looking", "assignTo": "dba@acme"}
    status, acked = call("POST", f"{ALERTS}/alert-00000000000b/acknowledge", body)
    assert status == 200, acked
    assert acked["status"] == "ACKNOWLEDGED" and acked["assignedTo"] == "dba@acme" and acked["acknowledgedAt"]
    stored = fake_ports.store.get("alert", "alert-00000000000b")
    assert (
        stored["assigned_to"] == "dba@acme" and stored["acknowledgment"]["acknowledgment_note"] == "looking"
    )
    _, active = call("GET", f"{ALERTS}?status=ACTIVE")
    assert [a["alertId"] for a in active["alerts"]] == ["alert-00000000000c", "alert-00000000000a"]
    assert active["summary"]["acknowledged"] == 0 and active["pagination"]["totalItems"] == 2
    assert call("GET", f"{ALERTS}?pageSize=101")[0] == 422
    assert call("GET", f"{ALERTS}?page=0")[0] == 422
    assert call("GET", f"{ALERTS}?tenantId=globex")[1]["pagination"]["totalItems"] == 0


def test_new_alerts_are_stored_in_snake_case_only(fake_ports):
    from pgfleet.domains.monitoring import AlertAction, Condition, observe

    condition = Condition("DiskFull", True, "HIGH", "capacity", "the disk is full", 99.0, 90.0,
                          [AlertAction(action_type="RESIZE", description="more disk")])  # fmt: skip
    assert observe(fake_ports, owner_tenant="acme", resource_id="pgi-000000000002", resource_type="instance",
                   condition=condition)  # fmt: skip
    [record] = [r for (kind, _), r in fake_ports.store.records.items() if kind == "alert"]
    assert not [k for k in record if k != k.lower()], record
    assert record["actions"] == [{"action_type": "RESIZE", "description": "more disk", "method": None,
                                  "path": None}]  # fmt: skip


def test_openapi_shows_camel_case_and_page_size(call):
    _, spec = call("GET", "/api/v1/openapi.json", role=None)
    for path in (ALERTS, "/api/v1/backup/list"):
        params = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        assert {"page", "pageSize", "tenantId"} <= set(params), params
        assert params["pageSize"]["schema"]["maximum"] == 100
    schemas = spec["components"]["schemas"]
    assert set(schemas["Pagination"]["properties"]) == {"page", "pageSize", "totalItems", "totalPages",
                                                         "hasNext", "hasPrevious"}  # fmt: skip
    assert {"alertId", "metricValue", "resourceType"} <= set(schemas["Alert"]["properties"])
    assert {"backupId", "retentionExpiry"} <= set(schemas["BackupInfo"]["properties"])
