"""The scheduled Lambda: EventBridge Scheduler invokes it with a Scheduled Event whose
`detail.task` names the work (reconcile, backups, maintenance...)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pgfleet.services import backups, quotas, reconcile
from pgfleet.services.context import Ports
from pgfleet.wiring import dependencies

log = logging.getLogger("pgfleet.scheduled")

TASKS: dict[str, Callable[[Ports, dict[str, Any]], list[str]]] = {
    "reconcile": reconcile.run,
    "quotas": quotas.run,  # storage/connection quotas, alerts, auto-pause (every minute)
    "backup": backups.run_scheduled,  # a resource's scheduled backup, or expiry of old backups
}


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    detail = event.get("detail") or {}
    task = detail.get("task")
    if task not in TASKS:
        log.warning("unknown scheduled task %r", task)
        return {"task": task, "actions": [], "error": "unknown task"}
    actions = TASKS[task](dependencies(), detail)
    for line in actions:
        log.info("%s: %s", task, line)
    return {"task": task, "actions": actions}
