"""Backup verification: three checks of one physical backup, run by the worker.

- CHECKSUM: pgBackRest verify: every file of the backup (and of the backups it builds on) and
  the WAL it needs, against the checksums recorded when they were written.
- STRUCTURE: the manifest is readable, referenced backups exist, and every WAL segment from
  the backup's start to its stop is archived.
- CONSISTENCY: the backup restored into a scratch server, started, every database checked
  with pg_amcheck and every table read to the end, then the scratch server removed.

A verification is a record (kind "backup_verification") and an Operation; the backup's
`verification_status` says VERIFIED or FAILED once it is done. The record's `checks` are
`IntegrityCheck` records (snake_case: check_type, status, details, error_count). Records written
before that hold camelCase keys (`checkType`, `errorCount`): `stored_checks` reads either, and
the next check saved rewrites them snake_case.
"""

from __future__ import annotations

from typing import Any

from pgfleet.core import operations
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, NotFound
from pgfleet.core.leases import lease_kept
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.domains import archive
from pgfleet.domains.backups import service as backups
from pgfleet.domains.backups.models import (
    BackupVerifyResponse,
    CheckResult,
    CheckType,
    IntegrityCheck,
)

KIND = "backup_verification"
CHECKS: tuple[CheckType, ...] = ("CHECKSUM", "STRUCTURE", "CONSISTENCY")
MAX_FINDINGS_SHOWN = 10


def request(ports: Ports, principal: Principal, backup_id: str) -> BackupVerifyResponse:
    """POST /api/v1/backup/verify/{backupId}: start verifying; 202 with the verification."""
    backup = backups.visible_backup(ports, principal, backup_id)
    if backup["logical"]:
        raise InvalidState(f"backup {backup_id} is a logical dump: verification checks physical backups")
    if backup["status"] != "completed":
        raise InvalidState(
            f"backup {backup_id} is {backup['status']}: only completed backups can be verified"
        )
    record = {
        "id": new_id("vrf"),
        "tenant_id": backup["tenant_id"],
        "parent_id": backup_id,
        "status": "RUNNING",
        "checks": [],
        "created_at": utcnow_iso(),
        "created_by": principal.sub,
    }
    op = operations.new_operation("backup.verify", record["id"], backup["tenant_id"])
    record["operation_id"] = op["id"]
    ports.store.create(KIND, record)
    archive.records.update(ports, backup, verification_id=record["id"], verification_status="PENDING")
    operations.submit(ports, op)
    return view(record)


def get(ports: Ports, principal: Principal, verification_id: str) -> BackupVerifyResponse:
    record = ports.store.get(KIND, verification_id)
    if record is None or not principal.sees_tenant(record["tenant_id"]):
        raise NotFound(f"verification {verification_id} not found")
    return view(record)


def latest_verified(ports: Ports, resource_id: str) -> dict[str, Any] | None:
    """The verification of one of the resource's backups that finished last with every check
    passed (`finished_at`, `backup_id` and its checks), or None when none did."""
    best: dict[str, Any] | None = None
    for backup in archive.records.of_resource(ports, resource_id):
        if backup.get("verification_status") != "VERIFIED" or not backup.get("verification_id"):
            continue
        record = ports.store.get(KIND, backup["verification_id"])
        if record is None or record.get("status") != "COMPLETED" or not record.get("finished_at"):
            continue
        if best is None or record["finished_at"] > best["finished_at"]:
            best = {**record, "backup_id": backup["id"]}
    return best


def stored_checks(record: dict[str, Any]) -> list[IntegrityCheck]:
    """The checks a verification record holds, in either spelling (a CamelModel parses both)."""
    return [IntegrityCheck.model_validate(c) for c in record.get("checks") or []]


def view(record: dict[str, Any]) -> BackupVerifyResponse:
    """The seed's BackupVerifyResponse; checks not run yet show as WARNING "pending"."""
    done = {c.check_type: c for c in stored_checks(record)}
    checks = [
        done.get(name) or IntegrityCheck(check_type=name, status="WARNING", details="pending")
        for name in CHECKS
    ]
    overall: CheckResult
    if record["status"] == "RUNNING":
        overall = "WARNING"
    elif record["status"] == "FAILED" or any(c.status == "FAILED" for c in checks):
        overall = "FAILED"
    elif any(c.status == "WARNING" for c in checks):
        overall = "WARNING"
    else:
        overall = "PASSED"
    return BackupVerifyResponse(
        verification_id=record["id"], status=record["status"], integrity_checks=checks, overall_result=overall
    )


# --- steps -----------------------------------------------------------------------------------------


def _records(ctx: StepContext) -> tuple[dict[str, Any], dict[str, Any]]:
    verification = ctx.ports.store.get(KIND, ctx.resource_id)
    if verification is None:
        raise NotFound(f"verification {ctx.resource_id} is gone")
    return verification, archive.records.get(ctx.ports, verification["parent_id"])


def _save(ctx: StepContext, check_type: CheckType, findings: list[str], passed_details: str) -> str:
    """Record one check's outcome (replacing an earlier one of that type); the record's other
    checks are rewritten snake_case too."""
    verification, _ = _records(ctx)
    shown = findings[:MAX_FINDINGS_SHOWN]
    more = f" (and {len(findings) - len(shown)} more)" if len(findings) > len(shown) else ""
    check = IntegrityCheck(
        check_type=check_type,
        status="FAILED" if findings else "PASSED",
        details="; ".join(shown) + more if findings else passed_details,
        error_count=len(findings),
    )
    checks = [c for c in stored_checks(verification) if c.check_type != check_type] + [check]
    ctx.ports.store.update(
        KIND, verification["id"], {"checks": [c.to_record() for c in checks]}, verification["revision"]
    )
    return f"{check_type} {check.status}: {check.details}"


def _checksum(ctx: StepContext) -> str:
    _, backup = _records(ctx)
    try:
        with lease_kept(ctx):
            result = ctx.ports.backup_engine.verify(backup["stanza"], backup["label"])
    except EngineError as exc:
        return _save(ctx, "CHECKSUM", [str(exc)], "")
    return _save(
        ctx, "CHECKSUM", result.findings, "every file and WAL segment matches the checksum recorded at backup"
    )


def _structure(ctx: StepContext) -> str:
    _, backup = _records(ctx)
    try:
        result = ctx.ports.backup_engine.check_structure(backup["stanza"], backup["label"])
    except EngineError as exc:
        return _save(ctx, "STRUCTURE", [str(exc)], "")
    return _save(
        ctx,
        "STRUCTURE",
        result.findings,
        f"manifest readable, referenced backups present, WAL {backup.get('wal_start')}..{backup.get('wal_stop')} "
        "archived",
    )


def _scratch_id(ctx: StepContext) -> str:
    return "scr-" + ctx.resource_id.split("-", 1)[1]


def _consistency(ctx: StepContext) -> str:
    """Restore into a scratch server, start it, check it, remove it: one step, since a
    retried step must start from an empty scratch server anyway."""
    _, backup = _records(ctx)
    host = ctx.ports.restore_host
    try:
        with lease_kept(ctx):
            location = host.prepare_scratch(_scratch_id(ctx))
            ctx.ports.backup_engine.restore(backup["stanza"], backup["label"], None, location.data_dir)
            host.start_scratch(location)
            report = host.check_consistency(location)
    except EngineError as exc:
        return _save(ctx, "CONSISTENCY", [f"the backup could not be restored and started: {exc}"], "")
    finally:
        host.remove_scratch(_scratch_id(ctx))
    return _save(
        ctx,
        "CONSISTENCY",
        report.findings,
        f"restored and started; pg_amcheck found no corruption; {len(report.databases)} database(s), "
        f"{report.tables} table(s), {report.rows} row(s) read",
    )


def _conclude(ctx: StepContext) -> str:
    verification, backup = _records(ctx)
    failed = [c.check_type for c in stored_checks(verification) if c.status == "FAILED"]
    # The backup's verdict first: a caller who sees the verification COMPLETED must also see
    # the backup's verificationStatus (both writes are idempotent on a retry).
    archive.records.update(ctx.ports, backup, verification_status="FAILED" if failed else "VERIFIED")
    ctx.ports.store.update(
        KIND,
        verification["id"],
        {"status": "COMPLETED", "finished_at": utcnow_iso()},
        verification["revision"],
    )
    return f"backup {backup['id']}: " + (f"{', '.join(failed)} failed" if failed else "every check passed")


def _failed(ctx: StepContext, error: str) -> None:
    ctx.ports.restore_host.remove_scratch(_scratch_id(ctx))
    verification = ctx.ports.store.get(KIND, ctx.resource_id)
    if verification is None:
        return
    ctx.ports.store.update(
        KIND, verification["id"], {"status": "FAILED", "error": error, "finished_at": utcnow_iso()}
    )
    backup = ctx.ports.store.get(archive.records.KIND, verification["parent_id"])
    if backup is not None:
        archive.records.update(ctx.ports, backup, verification_status="FAILED")


# Declared in this domain's manifest; the handlers register them.
WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        "backup.verify",
        (
            ("checksum", _checksum),
            ("structure", _structure),
            ("consistency", _consistency),
            ("conclude", _conclude),
        ),
        _failed,
    ),
)
