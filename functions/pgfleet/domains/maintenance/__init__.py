"""maintenance: tasks on schedules inside windows, safe execution with measured results,
database optimization, data cleanup, schedule conflicts and their optimization, a dashboard
and reports, `/api/v1/maintenance` (seed 003, phase 3)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.maintenance import executions, routes, tasks

DOMAIN = Domain(
    name="maintenance",
    mounts=(Mount(routes.router, "/api/v1/maintenance"),),
    workflows=executions.WORKFLOWS,  # maintenance.run: one execution
    # a task's cron schedule fires it; an execution that waited for its window starts (at())
    tasks={tasks.FIRE_TASK: executions.fire_task, executions.START_TASK: executions.start_waiting},
)

in_progress = executions.in_progress

__all__ = ["DOMAIN", "in_progress"]
