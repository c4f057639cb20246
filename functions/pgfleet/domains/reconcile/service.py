"""Reconcile: bring every resource back to its desired state, and say why.

Runs on a schedule (every minute) and when the local stack starts. For each instance:
an unfinished operation nobody is working on is handed to the worker again; a record left in
a transitional status with no operation that could finish it (stranded: a create or a change
whose operation was never stored) is marked failed, so delete can release it; a server that
should run but does not is started; one that should be stopped but runs is stopped; a first
backup whose operation nobody works on is handed to the worker again. Every action on the
server is written into the instance's `status_reason`.
"""

from __future__ import annotations

import logging
from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core.context import Ports
from pgfleet.core.errors import PgfleetError
from pgfleet.core.models import utcnow_iso
from pgfleet.domains import (
    archive,
    clusters,
    instances,
    migrations,
    monitoring,
    performance,
    replicas,
    tenants,
    upgrades,
)
from pgfleet.ports.scheduler import Schedule

log = logging.getLogger(__name__)

RECONCILE_SCHEDULE = Schedule(
    name="pgfleet-reconcile", expression="rate(1 minute)", payload={"task": "reconcile"}
)
# A paused resource is left alone (desired state "paused"); these only resume stale operations.
TRANSITIONAL = (
    "creating",
    "starting",
    "stopping",
    "restarting",
    "deleting",
    "pausing",
    "resuming",
    "resizing",
    "restoring",  # backups: a restore in place
    "upgrading",  # upgrades: a major-version upgrade
)


def run(ports: Ports, detail: dict[str, Any] | None = None) -> list[str]:
    actions: list[str] = []
    for kind, reconcile_one in ((instances.KIND, reconcile_instance), (clusters.KIND, reconcile_cluster)):
        for record in resources.all_records(ports, kind):
            try:
                line = reconcile_one(ports, record)
            except PgfleetError as exc:
                line = f"{record['id']}: could not reconcile: {exc}"
            if line:
                actions.append(line)
            try:
                # backups: a first backup that lost its worker or its message runs again
                line = archive.lifecycle.settle_first_backup(ports, record)
            except PgfleetError as exc:
                line = f"{record['id']}: could not check its first backup: {exc}"
            if line:
                actions.append(line)
    actions += replicas.reconcile(ports)
    actions += tenants.reconcile(ports)
    actions += migrations.reconcile(ports)  # the old endpoints of migrated instances forward again
    actions += upgrades.reconcile(ports)  # servers kept by blue/green upgrades, past their retention
    actions += performance.reconcile_poolers(ports)  # PgBouncer in front of servers (connections/configure)
    return actions


def reconcile_cluster(ports: Ports, record: dict[str, Any]) -> str | None:
    if record["status"] in TRANSITIONAL + ("scaling", "promoting"):
        return resources.fail_if_stranded(ports, clusters.KIND, record) or operations.resume_if_stale(
            ports, record
        )
    return clusters.reconcile(ports, record)


def reconcile_instance(ports: Ports, record: dict[str, Any]) -> str | None:
    if record["status"] in TRANSITIONAL:
        return resources.fail_if_stranded(ports, instances.KIND, record) or operations.resume_if_stale(
            ports, record
        )
    desired = record.get("desired_state", "running")
    state = ports.engine.state(record["id"])
    if desired == "running" and record["status"] == "running" and not state.running:
        alerted = _alert_down(ports, record, state.reason or "no postmaster")
        ports.engine.start(instances.server_spec(record))
        reason = f"reconcile at {utcnow_iso()}: server was not running ({state.reason or 'no postmaster'}); started it"
        ports.store.update(
            instances.KIND, record["id"], {"status_reason": reason, "updated_at": utcnow_iso()}
        )
        return "; ".join(filter(None, [f"{record['id']}: {reason}", alerted]))
    if desired == "stopped" and record["status"] == "stopped" and state.running:
        ports.engine.stop(record["id"])
        reason = f"reconcile at {utcnow_iso()}: server was running but should be stopped; stopped it"
        ports.store.update(
            instances.KIND, record["id"], {"status_reason": reason, "updated_at": utcnow_iso()}
        )
        return f"{record['id']}: {reason}"
    if desired == "running" and record["status"] == "running" and state.running:
        # A server made before TLS was on gets it (a reload: no restart, no lost session).
        done = ports.engine.ensure_tls(instances.server_spec(record))
        if done:
            reason = f"reconcile at {utcnow_iso()}: {done}"
            ports.store.update(
                instances.KIND, record["id"], {"status_reason": reason, "updated_at": utcnow_iso()}
            )
            return f"{record['id']}: {reason}"
    return None


def _alert_down(ports: Ports, record: dict[str, Any], why: str) -> str | None:
    """Raise the server_down alert before the restart (people hear of it at once); an alert
    that cannot be raised never stops the restart."""
    try:
        return monitoring.reconciled_down(ports, record, "instance", why)
    except Exception:  # the restart matters more than the alert
        log.exception("%s: could not raise the server_down alert", record["id"])
        return None
