"""Backups, restores, schedules and verification through the api handler (both API families),
with fake ports below the domains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"
BACKUP = "/api/v1/backup"


def _instance(call, fake_ports, name="orders-db", tenant="acme"):
    status, body = call("POST", SINGLE, {"name": name}, tenant=tenant)
    assert status == 202, body
    fake_ports.drain()
    return body


def _backup(call, fake_ports, iid, kind=SINGLE, **body):
    status, accepted = call("POST", f"{kind}/{iid}/backup", body or None)
    assert status == 202, accepted
    fake_ports.drain()
    return accepted


def test_every_instance_archives_and_has_a_first_backup(call, fake_ports):
    inst = _instance(call, fake_ports)
    record = fake_ports.store.get("instance", inst["id"])
    assert record["archive_settings"]["archive_mode"] == "on"
    assert int(record["archive_settings"]["archive_timeout"]) <= 60
    # The server is provisioned archiving, with the stanza's passphrase in Secrets.
    assert fake_ports.engine.servers[inst["id"]]["spec"].settings["archive_mode"] == "on"
    assert fake_ports.secrets.get(f"backup/{inst['id']}/cipher")
    assert fake_ports.backup_engine.stanzas[inst["id"]]["created"]
    status, listing = call("GET", f"{SINGLE}/{inst['id']}/backups")
    assert status == 200, listing
    assert [(b["type"], b["status"]) for b in listing["backups"]] == [("full", "completed")]
    assert set(listing["backups"][0]) == {"backup_id", "timestamp", "size_mb", "type", "status"}
    assert listing["earliest_restorable_time"] and listing["latest_restorable_time"]


def _created_alone(call, fake_ports, name="orders-db"):
    """An instance whose create operation has run, and whose first backup has not: returns
    the instance and the first backup's operation id."""
    from pgfleet.core import operations

    status, body = call("POST", SINGLE, {"name": name})
    assert status == 202, body
    fake_ports.queue.messages.remove({"operation_id": body["operation_id"]})
    queued = list(fake_ports.queue.messages)
    assert "succeeded" in operations.run(fake_ports, body["operation_id"])
    (message,) = [m for m in fake_ports.queue.messages if m not in queued]
    return body, message["operation_id"]


def _run_alone(fake_ports, operation_id):
    """Run one operation before any queued one (the first backup stays queued)."""
    from pgfleet.core import operations

    fake_ports.queue.messages.remove({"operation_id": operation_id})
    return operations.run(fake_ports, operation_id)


def test_a_restore_before_the_first_backup_is_409_with_the_reason(call, fake_ports):
    from pgfleet.domains.archive import records

    inst, backup_op = _created_alone(call, fake_ports)
    iid = inst["id"]
    first = call("GET", f"{SINGLE}/{iid}")[1]["first_backup_id"]
    _, listing = call("GET", f"{SINGLE}/{iid}/backups")
    assert [(b["backup_id"], b["type"], b["status"]) for b in listing["backups"]] == [
        (first, "full", "pending")
    ]
    assert listing["earliest_restorable_time"] is None and listing["latest_restorable_time"] is None
    status, refused = call("POST", f"{SINGLE}/{iid}/restore", {})
    assert status == 409 and refused["error"]["code"] == "invalid_state"
    assert refused["error"]["message"] == (
        f"no backup yet: the first backup of this instance is pending (operation {backup_op})"
    )
    assert refused["error"]["details"] == {"backup_id": first, "operation_id": backup_op}
    pitr = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    for body in ({"restore_mode": "overwrite"}, {"pitr_target": pitr}, {"backup_id": first}):
        status, refused = call("POST", f"{SINGLE}/{iid}/restore", body)
        assert status == 409 and f"operation {backup_op}" in refused["error"]["message"], (body, refused)
    initiate = {"backupId": first, "recoveryType": "FULL", "validateOnly": True}
    status, refused = call("POST", f"{BACKUP}/recovery/initiate", initiate)
    assert status == 409 and f"is pending (operation {backup_op})" in refused["error"]["message"], refused
    assert call("POST", f"{SINGLE}/{iid}/backup")[0] == 409  # one backup at a time: the first is on its way
    assert not fake_ports.store.list("recovery")[0]  # nothing was started
    fake_ports.drain()
    # The restorable window starts at the first backup.
    _, listing = call("GET", f"{SINGLE}/{iid}/backups")
    assert [(b["backup_id"], b["status"]) for b in listing["backups"]] == [(first, "completed")]
    finished = records.parse_iso(fake_ports.store.get("backup", first)["finished_at"])
    assert listing["earliest_restorable_time"] == records.iso(finished + timedelta(seconds=1))
    assert call("POST", f"{SINGLE}/{iid}/restore", {})[0] == 202


def test_a_retried_mark_running_starts_the_first_backup_once(call, fake_ports):
    """A worker that dies after storing the first backup, before its step is saved, runs the
    step again: the same record and operation, handed to the worker again."""
    from pgfleet.core.operations import StepContext
    from pgfleet.domains.archive import lifecycle, records

    inst, backup_op = _created_alone(call, fake_ports)
    create_op = fake_ports.store.get("operation", inst["operation_id"])
    again = lifecycle.start_first_backup(
        StepContext(fake_ports, create_op), fake_ports.store.get("instance", inst["id"])
    )
    assert again["id"] == call("GET", f"{SINGLE}/{inst['id']}")[1]["first_backup_id"]
    assert again["operation_id"] == backup_op
    assert [r["id"] for r in records.of_resource(fake_ports, inst["id"])] == [again["id"]]
    assert fake_ports.queue.messages == [{"operation_id": backup_op}] * 2  # a duplicate delivery is harmless
    fake_ports.drain()
    assert len(fake_ports.backup_engine.list_backups(inst["id"])) == 1


def test_a_failed_first_backup_is_visible_and_a_later_backup_makes_it_restorable(call, fake_ports):
    fake_ports.backup_engine.fail_on.add("backup")
    iid = _instance(call, fake_ports)["id"]
    _, got = call("GET", f"{SINGLE}/{iid}")
    assert got["status"] == "running" and got["backup_status"] == "failed", got
    assert "backup failed (injected)" in got["backup_status_reason"]
    assert fake_ports.backup_engine.stanzas[iid]["created"]  # archiving is not affected
    status, refused = call("POST", f"{SINGLE}/{iid}/restore", {})
    assert status == 409, refused
    assert (
        "the first backup of this instance failed (backup: backup failed (injected))"
        in refused["error"]["message"]
    )
    fake_ports.backup_engine.fail_on.clear()
    _backup(call, fake_ports, iid)
    _, got = call("GET", f"{SINGLE}/{iid}")
    assert got["backup_status"] == "completed" and "restorable from backup" in got["backup_status_reason"]


def test_delete_right_after_create_cancels_the_first_backup(call, fake_ports):
    inst, backup_op = _created_alone(call, fake_ports)
    status, deleting = call("DELETE", f"{SINGLE}/{inst['id']}")
    assert status == 202, deleting
    assert "succeeded" in _run_alone(fake_ports, deleting["operation_id"])  # before a worker took the backup
    _, op = call("GET", f"/api/v1/operations/{deleting['operation_id']}")
    assert op["steps"][0]["name"] == "settle_backups" and "cancelled backup" in op["steps"][0]["reason"]
    _, backup = call("GET", f"/api/v1/operations/{backup_op}")
    assert backup["status"] == "failed" and "cancelled: the instance is being deleted" in backup["error"]
    assert (
        inst["id"] not in fake_ports.backup_engine.stanzas and call("GET", f"{SINGLE}/{inst['id']}")[0] == 404
    )
    # With a final backup, that one is the only backup taken.
    kept, kept_op = _created_alone(call, fake_ports, "kept-db")
    _, deleting = call("DELETE", f"{SINGLE}/{kept['id']}?final_backup=true")
    assert "succeeded" in _run_alone(fake_ports, deleting["operation_id"])
    _, listing = call("GET", f"{SINGLE}/{kept['id']}/backups")
    assert [b["status"] for b in listing["backups"]] == ["failed", "completed"]
    assert len(fake_ports.backup_engine.list_backups(kept["id"])) == 1


def test_delete_finishes_a_first_backup_whose_worker_is_gone(call, fake_ports):
    from pgfleet.core import operations

    inst, backup_op = _created_alone(call, fake_ports)
    first = fake_ports.store.get("instance", inst["id"])["first_backup_id"]
    # A worker began the backup and died: the record is running, the operation's lease ran out.
    record = fake_ports.store.get("backup", first)
    fake_ports.store.update(
        "backup", first, {"status": "running", "started_at": record["created_at"], "labels_before": []}
    )
    fake_ports.store.update(
        "operation", backup_op, {"status": "running", "lease_owner": "gone:1", "lease_until": 0}
    )
    _, deleting = call("DELETE", f"{SINGLE}/{inst['id']}?final_backup=true")
    fake_ports.queue.messages.clear()
    assert "succeeded" in operations.run(fake_ports, deleting["operation_id"])
    _, op = call("GET", f"/api/v1/operations/{deleting['operation_id']}")
    assert f"waited for backup {first} (operation {backup_op}) to end: completed" in op["steps"][0]["reason"]
    _, listing = call("GET", f"{SINGLE}/{inst['id']}/backups")
    assert [(b["backup_id"] == first, b["status"]) for b in listing["backups"]] == [
        (True, "completed"), (False, "completed")
    ]  # fmt: skip


def test_reconcile_resumes_a_first_backup_nobody_works_on(call, fake_ports):
    from pgfleet.domains.reconcile import service as reconcile

    inst, backup_op = _created_alone(call, fake_ports)
    fake_ports.queue.messages.clear()  # its message is lost
    assert not [a for a in reconcile.run(fake_ports) if backup_op in a]  # too young to call lost
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    fake_ports.store.update("operation", backup_op, {"updated_at": an_hour_ago})
    actions = reconcile.run(fake_ports)
    assert any(
        a.startswith(f"{inst['id']}: first backup") and f"resumed backup.initial operation {backup_op}" in a
        for a in actions
    ), actions
    fake_ports.drain()
    assert call("GET", f"{SINGLE}/{inst['id']}")[1]["backup_status"] == "completed"
    # An operation that ended without completing its backup: the backup is marked failed, once.
    other, other_op = _created_alone(call, fake_ports, "other-db")
    fake_ports.queue.messages.clear()
    fake_ports.store.update("operation", other_op, {"status": "failed"})
    assert any(
        f"{other['id']}: first backup" in a and "marked failed" in a for a in reconcile.run(fake_ports)
    )
    assert not [a for a in reconcile.run(fake_ports) if other["id"] in a]
    _, got = call("GET", f"{SINGLE}/{other['id']}")
    assert got["backup_status"] == "failed" and "ended without completing it" in got["backup_status_reason"]


def test_backup_api_shapes_types_and_errors(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    accepted = _backup(call, fake_ports, iid)
    assert set(accepted) == {"backup_id", "operation_id", "resource_id", "type", "status"}
    assert accepted["type"] == "full" and accepted["status"] == "pending"
    _backup(call, fake_ports, iid, type="incremental")
    _backup(call, fake_ports, iid, type="differential")
    _, listing = call("GET", f"{SINGLE}/{iid}/backups")
    assert [b["type"] for b in listing["backups"]] == ["full", "full", "incremental", "differential"]
    assert all(b["status"] == "completed" and b["size_mb"] > 0 for b in listing["backups"])
    _, op = call("GET", f"/api/v1/operations/{accepted['operation_id']}")
    assert op["status"] == "succeeded" and [s["name"] for s in op["steps"]] == ["backup", "expire"]
    # validation, roles, tenants
    assert call("POST", f"{SINGLE}/{iid}/backup", {"type": "weekly"})[0] == 422
    assert call("POST", f"{SINGLE}/{iid}/backup", {"type": "full", "x": 1})[0] == 422
    assert call("POST", f"{SINGLE}/{iid}/backup", role="viewer")[0] == 403
    assert call("GET", f"{SINGLE}/{iid}/backups", role="viewer")[0] == 200
    assert call("GET", f"{SINGLE}/{iid}/backups", tenant="globex")[0] == 404
    assert call("POST", f"{SINGLE}/{iid}/backup", tenant="globex")[0] == 404
    assert call("POST", f"{SINGLE}/pgi-000000000000/backup")[0] == 404


def test_one_backup_at_a_time_and_only_of_a_running_instance(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    assert call("POST", f"{SINGLE}/{iid}/backup")[0] == 202
    status, body = call("POST", f"{SINGLE}/{iid}/backup")
    assert status == 409 and "in progress" in body["error"]["message"]
    fake_ports.drain()
    assert call("POST", f"{SINGLE}/{iid}/stop")[0] == 202
    fake_ports.drain()
    assert call("POST", f"{SINGLE}/{iid}/backup")[0] == 409


def test_failed_backup_is_recorded_failed(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    fake_ports.backup_engine.fail_on.add("backup")
    accepted = _backup(call, fake_ports, iid)
    _, status = call("GET", f"{BACKUP}/status/{accepted['backup_id']}")
    assert status["status"] == "FAILED" and "backup failed (injected)" in status["errorMessage"]
    _, listing = call("GET", f"{SINGLE}/{iid}/backups")
    assert listing["backups"][-1]["status"] == "failed"


def test_restore_into_a_new_instance(call, fake_ports):
    inst = _instance(call, fake_ports)
    backup_id = _backup(call, fake_ports, inst["id"])["backup_id"]
    status, restored = call(
        "POST", f"{SINGLE}/{inst['id']}/restore", {"backup_id": backup_id, "restore_mode": "new_instance"}
    )
    assert status == 202, restored
    assert restored["target_id"] != inst["id"] and restored["credentials"]["password"]
    assert restored["restore_id"].startswith("rcv-") and restored["backup_id"] == backup_id
    fake_ports.drain()
    _, new = call("GET", f"{SINGLE}/{restored['target_id']}")
    assert new["status"] == "running" and new["tenant_id"] == "acme"
    # its own stanza, restored from the source's
    restore = fake_ports.backup_engine.restores[-1]
    assert restore["stanza"] == inst["id"] and restore["target_dir"].endswith(f"{restored['target_id']}/data")
    assert fake_ports.backup_engine.stanzas[restored["target_id"]]["created"]
    _, rec = call("GET", f"{BACKUP}/recovery/status/{restored['restore_id']}")
    assert rec["status"] == "COMPLETED" and rec["progress"] == 100
    assert {r["check"] for r in rec["dataIntegrityResults"]} >= {"RECOVERY_TARGET", "CONNECTIVITY"}


def test_restore_in_place_and_roll_back(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    target = (datetime.now(UTC) - timedelta(seconds=10)).isoformat()
    status, restored = call(
        "POST", f"{SINGLE}/{iid}/restore", {"restore_mode": "overwrite", "pitr_target": target}
    )
    assert status == 202 and restored["target_id"] == iid and restored["status"] == "restoring"
    assert restored["credentials"] is None
    assert call("POST", f"{SINGLE}/{iid}/stop")[0] == 409
    fake_ports.drain()
    _, got = call("GET", f"{SINGLE}/{iid}")
    assert got["status"] == "running" and "restored in place" in got["status_reason"]
    calls = [c[0] for c in fake_ports.restore_host.calls]
    assert calls.index("set_aside") < calls.index("recover") < calls.index("discard_previous")
    assert fake_ports.backup_engine.restores[-1]["target_time"] is not None
    # A failing restore puts the previous data back and the instance as it was.
    fake_ports.restore_host.fail_on.add("recover")
    status, restored = call("POST", f"{SINGLE}/{iid}/restore", {"restore_mode": "overwrite"})
    fake_ports.drain()
    _, got = call("GET", f"{SINGLE}/{iid}")
    assert got["status"] == "running" and "restore failed" in got["status_reason"]
    assert fake_ports.restore_host.calls[-1][0] == "roll_back"
    assert fake_ports.engine.servers[iid]["running"]
    _, rec = call("GET", f"{BACKUP}/recovery/status/{restored['restore_id']}")
    assert rec["status"] == "FAILED" and "recover failed" in rec["errorMessage"]


def test_restore_validation(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    status, body = call("POST", f"{SINGLE}/{iid}/restore", {"pitr_target": future})
    assert status == 422 and body["error"]["details"]["field"] == "pitr_target"
    status, body = call("POST", f"{SINGLE}/{iid}/restore", {"pitr_target": "2001-01-01T00:00:00Z"})
    assert status == 422 and "earliest" in body["error"]["details"]
    assert call("POST", f"{SINGLE}/{iid}/restore", {"restore_mode": "sideways"})[0] == 422
    assert call("POST", f"{SINGLE}/{iid}/restore", {"backup_id": "bkp-000000000000"})[0] == 404
    assert call("POST", f"{SINGLE}/{iid}/restore", {"backup_id": "nope"})[0] == 422
    assert call("POST", f"{SINGLE}/{iid}/restore", {}, role="viewer")[0] == 403
    assert call("POST", f"{SINGLE}/{iid}/restore", {}, tenant="globex")[0] == 404
    assert call("POST", f"{SINGLE}/{iid}/restore", {"restore_mode": "overwrite", "name": "x-db"})[0] == 422


def test_schedule_put_get_validation_and_scheduled_runs(call, fake_ports):
    from pgfleet.domains.backups import service as backups

    iid = _instance(call, fake_ports)["id"]
    status, schedule = call("GET", f"{SINGLE}/{iid}/backup/schedule")
    assert status == 200 and schedule["enabled"] is False and schedule["full_backup_cron"] is None
    bad = {"full_backup_cron": "cron(61 * * * ? *)"}
    status, body = call("PUT", f"{SINGLE}/{iid}/backup/schedule", bad)
    assert status == 422 and body["error"]["details"]["field"] == "full_backup_cron"
    assert call("PUT", f"{SINGLE}/{iid}/backup/schedule", {"retention_days": 0})[0] == 422
    assert (
        call("PUT", f"{SINGLE}/{iid}/backup/schedule", {"full_backup_cron": "* * * * ? *"}, role="viewer")[0]
        == 403
    )
    body = {"full_backup_cron": "0 3 * * ? *", "incremental_backup_cron": "rate(1 hour)", "retention_days": 3}
    status, schedule = call("PUT", f"{SINGLE}/{iid}/backup/schedule", body)
    assert status == 200, schedule
    assert schedule["full_backup_cron"] == "cron(0 3 * * ? *)" and schedule["next_full_backup_at"]
    names = set(fake_ports.scheduler.schedules)
    assert {
        f"pgfleet-backup-{iid}-full",
        f"pgfleet-backup-{iid}-incremental",
        "pgfleet-backup-expiry",
    } <= names
    payload = fake_ports.scheduler.schedules[f"pgfleet-backup-{iid}-incremental"].payload
    lines = backups.run_scheduled(fake_ports, payload)
    assert "scheduled incremental backup" in lines[0]
    fake_ports.drain()
    _, listing = call("GET", f"{SINGLE}/{iid}/backups")
    assert listing["backups"][-1]["type"] == "incremental"
    record = fake_ports.store.get("backup", listing["backups"][-1]["backup_id"])
    expiry = datetime.fromisoformat(record["retention_expiry"].replace("Z", "+00:00"))
    assert timedelta(days=2.9) < expiry - datetime.now(UTC) < timedelta(days=3.1)
    # removing the cron removes the schedule
    call(
        "PUT", f"{SINGLE}/{iid}/backup/schedule", {"full_backup_cron": None, "incremental_backup_cron": None}
    )
    assert f"pgfleet-backup-{iid}-full" not in fake_ports.scheduler.schedules


def test_expiry_keeps_the_newest_full_and_what_others_need(call, fake_ports):
    from pgfleet.domains.archive import records as backup_records

    iid = _instance(call, fake_ports)["id"]
    for backup_type in ("full", "incremental", "full"):
        _backup(call, fake_ports, iid, type=backup_type)
    records = sorted(backup_records.of_resource(fake_ports, iid), key=lambda r: r["finished_at"])
    later = datetime.now(UTC) + timedelta(days=30)
    lines = backup_records.expire_due(fake_ports, now=later)
    left = backup_records.of_resource(fake_ports, iid)
    assert [r["id"] for r in left] == [records[-1]["id"]], lines
    assert any("cannot be expired" in line for line in lines)


def test_delete_with_and_without_final_backup(call, fake_ports):
    kept = _instance(call, fake_ports, "kept-db")["id"]
    gone = _instance(call, fake_ports, "gone-db")["id"]
    assert call("DELETE", f"{SINGLE}/{kept}?final_backup=true")[0] == 202
    assert call("DELETE", f"{SINGLE}/{gone}")[0] == 202
    fake_ports.drain()
    assert call("GET", f"{SINGLE}/{kept}")[0] == 404
    _, listing = call("GET", f"{SINGLE}/{kept}/backups")
    assert len(listing["backups"]) == 2  # the first backup and the final one
    assert call("GET", f"{SINGLE}/{gone}/backups")[0] == 404
    assert gone not in fake_ports.backup_engine.stanzas and not fake_ports.secrets.get(
        f"backup/{gone}/cipher"
    )
    assert call("POST", f"{SINGLE}/{kept}/restore", {"restore_mode": "overwrite"})[0] == 404
    status, restored = call(
        "POST", f"{SINGLE}/{kept}/restore", {"restore_mode": "new_instance", "name": "back-db"}
    )
    assert status == 202, restored
    fake_ports.drain()
    _, new = call("GET", f"{SINGLE}/{restored['target_id']}")
    assert new["status"] == "running" and new["name"] == "back-db"
    assert call("GET", f"{SINGLE}/{kept}/backups", tenant="globex")[0] == 404


def test_execute_status_and_list(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    body = {"backupType": "INCREMENTAL", "targetId": iid, "retentionPeriod": "P30D", "compressionLevel": 6,
            "tags": {"reason": "pre-release"}}  # fmt: skip
    status, executed = call("POST", f"{BACKUP}/execute", body)
    assert status == 202, executed
    assert set(executed) == {"backupId", "status", "estimatedDuration", "backupLocation", "message"}
    assert executed["status"] == "INITIATED" and executed["estimatedDuration"].startswith("PT")
    fake_ports.backup_engine.progress[iid] = 40
    record = fake_ports.store.get("backup", executed["backupId"])
    fake_ports.store.update("backup", record["id"], {"status": "running", "started_at": record["created_at"]})
    _, running = call("GET", f"{BACKUP}/status/{executed['backupId']}")
    assert running["status"] == "RUNNING" and running["progress"] == 40
    fake_ports.store.update("backup", record["id"], {"status": "pending"})
    fake_ports.backup_engine.progress.clear()
    fake_ports.drain()
    _, done = call("GET", f"{BACKUP}/status/{executed['backupId']}")
    assert done["status"] == "COMPLETED" and done["progress"] == 100 and done["backupSize"] > 0
    assert done["verificationStatus"] == "PENDING" and done["duration"] is not None
    stored = fake_ports.store.get("backup", executed["backupId"])
    assert stored["compression_level"] == 6 and stored["tags"] == {"reason": "pre-release"}
    _, listing = call("GET", f"{BACKUP}/list?backupType=INCREMENTAL")
    assert [b["backupId"] for b in listing["backups"]] == [executed["backupId"]]
    assert listing["backups"][0]["tags"]["reason"] == "pre-release"
    _, page = call("GET", f"{BACKUP}/list?pageSize=1&page=2")
    assert page["pagination"] == {"page": 2, "pageSize": 1, "totalItems": 2, "totalPages": 2,
                                  "hasNext": False, "hasPrevious": True}  # fmt: skip
    _, none = call("GET", f"{BACKUP}/list?status=FAILED")
    assert none["backups"] == []
    assert call("GET", f"{BACKUP}/list?status=DONE")[0] == 422
    assert call("GET", f"{BACKUP}/list?tenantId=globex")[0] == 404
    assert call("GET", f"{BACKUP}/status/{executed['backupId']}", tenant="globex")[0] == 404
    assert call("GET", f"{BACKUP}/list", role="viewer")[0] == 200


def test_execute_validation_and_roles(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    for bad in ({"backupType": "WEEKLY", "targetId": iid}, {"backupType": "FULL", "retentionPeriod": "30 days"},
                {"backupType": "FULL", "compressionLevel": 10}, {"backupType": "FULL", "encryptionEnabled": False},
                {"backupType": "FULL", "targetId": "db-1"}, {"backupType": "FULL", "unknown": 1}):  # fmt: skip
        status, body = call("POST", f"{BACKUP}/execute", bad)
        assert status == 422, (bad, body)
    assert call("POST", f"{BACKUP}/execute", {"backupType": "FULL"}, role="viewer")[0] == 403
    assert call("POST", f"{BACKUP}/execute", {"backupType": "FULL", "tenantId": "globex"})[0] == 404
    assert (
        call("POST", f"{BACKUP}/execute", {"backupType": "FULL", "targetId": iid}, tenant="globex")[0] == 404
    )


def test_backup_set_of_a_tenant(call, fake_ports):
    a = _instance(call, fake_ports, "a-db")["id"]
    b = _instance(call, fake_ports, "b-db")["id"]
    other = _instance(call, fake_ports, "c-db", tenant="globex")["id"]
    status, executed = call("POST", f"{BACKUP}/execute", {"backupType": "FULL", "tenantId": "acme"})
    assert status == 202 and executed["backupId"].startswith("bks-"), executed
    _, running = call("GET", f"{BACKUP}/status/{executed['backupId']}")
    assert running["status"] == "RUNNING"
    fake_ports.drain()
    _, done = call("GET", f"{BACKUP}/status/{executed['backupId']}")
    assert done["status"] == "COMPLETED" and done["progress"] == 100
    members = fake_ports.store.get("backup_set", executed["backupId"])["members"]
    assert {fake_ports.store.get("backup", m)["parent_id"] for m in members} == {a, b}
    # a platform admin without tenantId backs up every tenant
    status, everything = call("POST", f"{BACKUP}/execute", {"backupType": "FULL"}, role="admin", tenant=None)
    assert status == 202
    members = fake_ports.store.get("backup_set", everything["backupId"])["members"]
    assert {fake_ports.store.get("backup", m)["parent_id"] for m in members} == {a, b, other}


def test_verify_passes_and_a_corrupted_backup_fails(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    backup_id = _backup(call, fake_ports, iid)["backup_id"]
    status, started = call("POST", f"{BACKUP}/verify/{backup_id}")
    assert status == 202 and started["status"] == "RUNNING" and started["overallResult"] == "WARNING"
    fake_ports.drain()
    _, result = call("GET", f"{BACKUP}/verify/{started['verificationId']}")
    assert result["status"] == "COMPLETED" and result["overallResult"] == "PASSED", result
    assert [c["checkType"] for c in result["integrityChecks"]] == ["CHECKSUM", "STRUCTURE", "CONSISTENCY"]
    assert "3 table(s), 42 row(s)" in result["integrityChecks"][2]["details"]
    assert call("GET", f"{BACKUP}/status/{backup_id}")[1]["verificationStatus"] == "VERIFIED"
    assert ("remove_scratch", f"scr-{started['verificationId'][4:]}") in fake_ports.restore_host.calls
    label = fake_ports.store.get("backup", backup_id)["label"]
    fake_ports.backup_engine.corrupted.add(label)
    _, started = call("POST", f"{BACKUP}/verify/{backup_id}")
    fake_ports.drain()
    _, result = call("GET", f"{BACKUP}/verify/{started['verificationId']}")
    checksum = result["integrityChecks"][0]
    assert (
        result["overallResult"] == "FAILED" and checksum["status"] == "FAILED" and checksum["errorCount"] == 1
    )
    assert "invalid checksum" in checksum["details"]
    assert call("GET", f"{BACKUP}/status/{backup_id}")[1]["verificationStatus"] == "FAILED"
    assert call("POST", f"{BACKUP}/verify/{backup_id}", role="viewer")[0] == 403
    assert call("POST", f"{BACKUP}/verify/bkp-000000000000")[0] == 404


def test_recovery_plan_dry_run_changes_nothing(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    backup_id = _backup(call, fake_ports, iid)["backup_id"]
    before = (dict(fake_ports.store.records), list(fake_ports.queue.messages))
    target = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    body = {
        "backupId": backup_id,
        "recoveryType": "POINT_IN_TIME",
        "targetTime": target,
        "validateOnly": True,
    }
    status, planned = call("POST", f"{BACKUP}/recovery/initiate", body)
    assert status == 200, planned
    plan = planned["recoveryPlan"]
    assert set(plan) == {"steps", "totalEstimatedTime", "dataIntegrityChecks", "rollbackProcedure"}
    assert [s["name"] for s in plan["steps"]][:3] == ["configure_archiving", "restore_files", "provision"]
    assert all(s["estimatedDuration"].startswith("PT") for s in plan["steps"])
    assert plan["dataIntegrityChecks"] and "Nothing existing is changed" in plan["rollbackProcedure"]
    assert (dict(fake_ports.store.records), list(fake_ports.queue.messages)) == before
    in_place = {**body, "recoveryLocation": "IN_PLACE"}
    assert (
        "set aside"
        in call("POST", f"{BACKUP}/recovery/initiate", in_place)[1]["recoveryPlan"]["rollbackProcedure"]
    )
    for bad in ({"backupId": backup_id, "recoveryType": "POINT_IN_TIME"},
                {"backupId": backup_id, "recoveryType": "REWIND"},
                {"backupId": backup_id, "recoveryType": "SELECTIVE"},
                {"backupId": backup_id, "recoveryType": "FULL", "recoveryLocation": "MARS"}):  # fmt: skip
        assert call("POST", f"{BACKUP}/recovery/initiate", bad)[0] == 422, bad
    assert (
        call("POST", f"{BACKUP}/recovery/initiate", {**body, "validateOnly": False}, role="viewer")[0] == 403
    )


def test_recovery_full_and_selective(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    backup_id = _backup(call, fake_ports, iid)["backup_id"]
    status, started = call(
        "POST", f"{BACKUP}/recovery/initiate", {"backupId": backup_id, "recoveryType": "FULL"}
    )
    assert status == 202 and started["status"] == "INITIATED", started
    fake_ports.drain()
    _, rec = call("GET", f"{BACKUP}/recovery/status/{started['recoveryId']}")
    assert rec["status"] == "COMPLETED" and rec["currentStep"] == "finish"
    assert fake_ports.backup_engine.restores[-1]["backup_id"] is not None  # to the end of that backup
    body = {"backupId": backup_id, "recoveryType": "SELECTIVE", "targetTenant": "tenant-abc"}
    status, started = call("POST", f"{BACKUP}/recovery/initiate", body)
    assert status == 202, started
    fake_ports.drain()
    _, rec = call("GET", f"{BACKUP}/recovery/status/{started['recoveryId']}")
    assert rec["status"] == "COMPLETED", rec
    calls = [
        c
        for c in fake_ports.restore_host.calls
        if c[0] in ("dump_database", "restore_database", "remove_scratch")
    ]
    assert [c[0] for c in calls] == ["dump_database", "remove_scratch", "restore_database"]
    assert calls[0][1] == "tenant_abc"
    assert fake_ports.store.get("instance", iid)["status"] == "running"
    assert call("GET", f"{BACKUP}/recovery/status/{started['recoveryId']}", tenant="globex")[0] == 404


def test_logical_backups_for_tenants(call, fake_ports):
    from pgfleet.domains.archive import logical as logical_backups

    iid = _instance(call, fake_ports)["id"]
    resource = fake_ports.store.get("instance", iid)
    record = logical_backups.record_logical_backup(
        fake_ports, resource, database="tenant_abc", tenant="tenant-abc", record_id="bkp-0123456789ab"
    )
    assert record["logical"] and record["status"] == "completed" and record["encrypted"]
    again = logical_backups.record_logical_backup(
        fake_ports, resource, database="tenant_abc", record_id="bkp-0123456789ab"
    )
    assert again["id"] == record["id"]
    _, listing = call("GET", f"{BACKUP}/list")
    logical = next(b for b in listing["backups"] if b["backupId"] == record["id"])
    assert logical["tags"]["logical"] == "true" and logical["tags"]["tenant"] == "tenant-abc"
    # not a physical backup: the infrastructure API's list and restore do not offer it
    _, physical = call("GET", f"{SINGLE}/{iid}/backups")
    assert record["id"] not in {b["backup_id"] for b in physical["backups"]}
    status, started = call(
        "POST", f"{BACKUP}/recovery/initiate", {"backupId": record["id"], "recoveryType": "FULL"}
    )
    assert status == 202, started
    fake_ports.drain()
    assert call("GET", f"{BACKUP}/recovery/status/{started['recoveryId']}")[1]["status"] == "COMPLETED"
    assert fake_ports.restore_host.calls[-1][0] == "restore_database"


def test_cluster_backup_and_restores(call, fake_ports):
    status, body = call("POST", CLUSTERS, {"name": "ha-db", "node_count": 2})
    assert status == 202
    fake_ports.drain()
    cid = body["id"]
    assert fake_ports.store.get("cluster", cid)["status"] == "running"
    backup_id = _backup(call, fake_ports, cid, kind=CLUSTERS)["backup_id"]
    _, listing = call("GET", f"{CLUSTERS}/{cid}/backups")
    assert len(listing["backups"]) == 2
    # the stanza is pointed at the primary before the backup
    assert fake_ports.backup_engine.stanzas[cid]["pg1"][0].endswith(f"{cid}/n1/data")
    status, restored = call("POST", f"{CLUSTERS}/{cid}/restore", {"backup_id": backup_id})
    assert (
        status == 202
        and restored["target_id"].startswith("pgc-")
        and restored["credentials"]["read_only_uri"]
    )
    fake_ports.drain()
    _, new = call("GET", f"{CLUSTERS}/{restored['target_id']}")
    assert new["status"] == "running" and new["node_count"] == 2
    status, restored = call("POST", f"{CLUSTERS}/{cid}/restore", {"restore_mode": "overwrite"})
    assert status == 202
    fake_ports.drain()
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    assert got["status"] == "running" and "restored in place" in got["status_reason"]
    set_aside = [c[1] for c in fake_ports.restore_host.calls if c[0] == "set_aside" and cid in c[1]]
    assert len(set_aside) == 2  # the leader's data and the replica's (re-cloned)
    assert ("reset_cluster_state", cid) in fake_ports.restore_host.calls


def test_a_stopped_source_restores_only_what_is_archived(call, fake_ports):
    iid = _instance(call, fake_ports)["id"]
    fake_ports.backup_engine.add_minutes(iid, 10)
    assert call("POST", f"{SINGLE}/{iid}/stop")[0] == 202
    fake_ports.drain()
    window_end = datetime.now(UTC)
    later = (window_end + timedelta(seconds=2)).isoformat()
    status, body = call("POST", f"{SINGLE}/{iid}/restore", {"pitr_target": later})
    # the fake's window ends now: a moment after it is not archived for a stopped source
    assert status == 422 and "latest" in body["error"]["details"], body
    earlier = (window_end - timedelta(minutes=1)).isoformat()
    assert call("POST", f"{SINGLE}/{iid}/restore", {"pitr_target": earlier})[0] == 202
