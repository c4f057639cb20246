"""What moves with a migration besides the data, and what does not (and why).

The data, roles and databases move by the physical copy. At the cutover the records that hang
off the source move to the cluster: tenant records (their databases and roles are on the
cluster already), the quota document, the backup schedule and the setting overrides (those
before the build, so the cluster's nodes start with them). What cannot move is listed in the
migration's `not_moved`, with the reason.
"""

from __future__ import annotations

from typing import Any

from pgfleet.core.context import Ports
from pgfleet.core.errors import PgfleetError
from pgfleet.core.models import utcnow_iso
from pgfleet.domains import archive, quotas, servers, tenants

QUOTA_KIND = "quota"


def not_moved(ports: Ports, source: dict[str, Any]) -> list[dict[str, str]]:
    """What stays with the source, and why."""
    found = []
    replicas, _ = ports.store.list("replica", parent_id=source["id"], limit=100)
    if replicas:
        found.append({
            "what": f"read replicas ({', '.join(r['id'] for r in replicas)})",
            "reason": "they stream from the source, which stops at the cutover: they keep serving its data "
            "as of the cutover, read-only, until you delete them; the cluster's own replicas serve reads "
            "(target.read_only_uri), and POST .../cluster/{id}/scale adds more",
        })  # fmt: skip
    found.append({
        "what": "backups",
        "reason": "the source's backups stay with the source (restorable while it exists); the cluster "
        "starts its own with a first full backup at the cutover",
    })  # fmt: skip
    return found


def to_move(ports: Ports, source: dict[str, Any]) -> list[dict[str, str]]:
    """What the cutover moves to the cluster, as known when the migration is accepted."""
    found = []
    names = [t["name"] for t in tenants.of_server(ports, source["id"])]
    if names:
        found.append({"what": f"tenants ({', '.join(names)})",
                      "how": "their databases and roles come with the copy; their records, passwords and "
                      "quotas move to the cluster at the cutover"})  # fmt: skip
    if ports.store.get(QUOTA_KIND, source["id"]) is not None:
        found.append({"what": "quota", "how": "the quota document moves to the cluster at the cutover and "
                      "is enforced there from then on"})  # fmt: skip
    if ports.store.get(archive.schedules.KIND, source["id"]) is not None:
        found.append({"what": "backup schedule", "how": "the cluster gets the same schedule at the cutover; "
                      "the source's is removed (it stops)"})  # fmt: skip
    if source.get("settings"):
        found.append({"what": f"setting overrides ({', '.join(sorted(source['settings']))})",
                      "how": "the cluster's nodes are built with them"})  # fmt: skip
    return found


def move_settings(ports: Ports, source_id: str, cluster_id: str) -> str:
    """Before the cluster is provisioned: its nodes get the source's setting overrides."""
    source = ports.store.get("instance", source_id) or {}
    overrides = dict(source.get("settings") or {})
    if not overrides:
        return "no setting overrides to move"
    ports.store.update("cluster", cluster_id, {"settings": overrides, "updated_at": utcnow_iso()})
    return f"setting overrides {', '.join(sorted(overrides))} given to the cluster"


def move(ports: Ports, source_id: str, cluster_id: str) -> list[str]:
    """At the cutover, once the cluster takes writes: move tenant records, the quota document
    and the backup schedule from the source to the cluster. Idempotent."""
    done = []
    moved = [
        tenants.move(ports, t, "cluster", cluster_id)["name"]
        for t in list(tenants.of_server(ports, source_id))
    ]
    if moved:
        done.append(f"tenants {', '.join(moved)} moved")
    quota = ports.store.get(QUOTA_KIND, source_id)
    if quota is not None:
        done.append(_move_quota(ports, quota, cluster_id))
    schedule = ports.store.get(archive.schedules.KIND, source_id)
    if schedule is not None:
        cluster = ports.store.get("cluster", cluster_id)
        if cluster is not None:
            body = archive.BackupScheduleUpdate(
                full_backup_cron=schedule.get("full_backup_cron"),
                incremental_backup_cron=schedule.get("incremental_backup_cron"),
                retention_days=schedule["retention_days"], enabled=schedule["enabled"],
            )  # fmt: skip
            archive.schedules.put(ports, cluster, body)
            archive.schedules.remove(ports, source_id)
            done.append("backup schedule moved")
    return done


def _move_quota(ports: Ports, quota: dict[str, Any], cluster_id: str) -> str:
    if ports.store.get(QUOTA_KIND, cluster_id) is None:
        moved = {k: v for k, v in quota.items() if k != "revision"}
        moved.update(id=cluster_id, parent_id=cluster_id, resource_type="cluster", usage=None,
                     writes_suspended=False, updated_at=utcnow_iso(),
                     status_reason=f"moved from instance {quota['id']} by its migration")  # fmt: skip
        ports.store.create(QUOTA_KIND, moved)
    ports.store.delete(QUOTA_KIND, quota["id"])
    server = servers.get(ports, "cluster", cluster_id)
    if server is None:
        return "quota moved"
    try:
        quotas.evaluate(ports, server)
        return "quota moved and enforced on the cluster"
    except PgfleetError as exc:
        return f"quota moved (enforced by the minute task: {exc})"
