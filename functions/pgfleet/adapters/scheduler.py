"""Scheduler on Amazon EventBridge Scheduler.

Every schedule targets the scheduled Lambda function; its Input is an EventBridge-style
"Scheduled Event" whose `detail` is the schedule's payload. `<aws.scheduler.scheduled-time>`
and `<aws.scheduler.execution-id>` are context attributes EventBridge Scheduler fills in at
each run (the local ticker does the same).
"""

from __future__ import annotations

import json
from typing import Any

from pgfleet.adapters.aws import client, error_code
from pgfleet.core.errors import StoreError
from pgfleet.ports.scheduler import Schedule, Scheduler


def scheduled_event_input(name: str, payload: dict[str, Any]) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "<aws.scheduler.execution-id>",
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "time": "<aws.scheduler.scheduled-time>",
            "resources": [name],
            "detail": payload,
        }
    )


class EventBridgeScheduler(Scheduler):
    def __init__(self, group: str, target_arn: str, role_arn: str) -> None:
        self._group = group
        self._target_arn = target_arn
        self._role_arn = role_arn

    def put(self, schedule: Schedule) -> None:
        args: dict[str, Any] = {
            "Name": schedule.name,
            "GroupName": self._group,
            "ScheduleExpression": schedule.expression,
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if schedule.enabled else "DISABLED",
            "Target": {
                "Arn": self._target_arn,
                "RoleArn": self._role_arn,
                "Input": scheduled_event_input(schedule.name, schedule.payload),
            },
        }
        sched = client("scheduler")
        try:
            sched.create_schedule(**args)
        except Exception as exc:
            if error_code(exc) != "ConflictException":
                raise StoreError(f"could not create schedule {schedule.name}: {exc}") from exc
            sched.update_schedule(**args)

    def delete(self, name: str) -> None:
        try:
            client("scheduler").delete_schedule(Name=name, GroupName=self._group)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise StoreError(f"could not delete schedule {name}: {exc}") from exc

    def get(self, name: str) -> Schedule | None:
        try:
            full = client("scheduler").get_schedule(Name=name, GroupName=self._group)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise StoreError(f"could not read schedule {name}: {exc}") from exc
        return _schedule(full)


def _schedule(full: dict[str, Any]) -> Schedule:
    event = json.loads(full["Target"].get("Input") or "{}")
    return Schedule(
        name=full["Name"],
        expression=full["ScheduleExpression"],
        payload=event.get("detail", {}),
        enabled=full.get("State", "ENABLED") == "ENABLED",
    )
