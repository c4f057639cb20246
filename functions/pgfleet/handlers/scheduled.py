"""The scheduled Lambda: EventBridge Scheduler invokes it with a Scheduled Event whose
`detail.task` names the work (reconcile, backups, maintenance...)."""

from __future__ import annotations

import logging
from typing import Any

from pgfleet.core.context import provide
from pgfleet.handlers import domains
from pgfleet.wiring import cold_start, dependencies

log = logging.getLogger("pgfleet.scheduled")

provide(dependencies)
cold_start()
domains.install()
TASKS = domains.tasks()


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
