"""maintenance: tasks on schedules inside windows, safe execution with measured results,
database optimization, data cleanup, schedule conflicts and their optimization, a dashboard
and reports, `/api/v1/maintenance` (seed 003, phase 3)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.maintenance import cleanup, executions, routes, tasks

DOMAIN = Domain(
    name="maintenance",
    mounts=(Mount(routes.router, "/api/v1/maintenance"),),
    workflows=executions.WORKFLOWS,  # maintenance.run: one execution
    # a task's cron schedule fires it; an execution that waited for its window starts (at())
    tasks={tasks.FIRE_TASK: executions.fire_task, executions.START_TASK: executions.start_waiting},
)

in_progress = executions.in_progress
# the defaults of the tenant settings (section MAINTENANCE of the system configuration)
VACUUM_COST_DELAY_MS = executions.COST_DELAY_MS
IDLE_CONNECTION_DAYS = float(cleanup.DEFAULT_DAYS["SESSION"] or 1)

__all__ = ["DOMAIN", "IDLE_CONNECTION_DAYS", "VACUUM_COST_DELAY_MS", "in_progress"]
