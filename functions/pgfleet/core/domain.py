"""The Domain manifest: what one API domain adds to pgfleet, declared in its `__init__`.

The handlers, the local stack and the deployment checks iterate the list of domains
(`pgfleet.handlers.domains.DOMAINS`); nothing is registered by an import side effect. A
domain declares:
- its routers and the prefix each is mounted under;
- a permission on every route (`requires`), checked before routing: a route without one is
  refused;
- its workflows (Operations the worker runs step by step), and the steps it adds to the
  delete of a resource its records hang off (cascades);
- its scheduled tasks (`detail.task` of an EventBridge Scheduler event) and the platform
  schedules that fire them;
- the queue messages it handles besides operations (`{"type": ...}`, e.g. a notification
  delivery).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dt_time
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import Router

    from pgfleet.core.context import Ports
    from pgfleet.core.operations import Cascade, Workflow
    from pgfleet.ports.scheduler import Schedule

F = TypeVar("F", bound=Callable[..., Any])

PERMISSION_ATTRIBUTE = "__pgfleet_permission__"
PUBLIC = "public"  # the permission of a route anyone may call (health, version)

ScheduledTask = Callable[["Ports", dict[str, Any]], list[str]]
# A queue message other than an operation's (`{"type": name, ...}`): the handler returns a line
# saying what it did. It must be idempotent (delivery is at least once); raising leaves the
# message for SQS to deliver again after the visibility timeout.
MessageHandler = Callable[["Ports", dict[str, Any]], str]


def requires(permission: str) -> Callable[[F], F]:
    """Declare the permission a route needs, in the seed's vocabulary (`area:action`, e.g.
    `backup:create`, `monitoring:read`). Put it under the route decorator:

        @router.post("/<id>/terminate")
        @requires("locks:terminate")
        def terminate(...): ...
    """
    if permission != PUBLIC and (":" not in permission or permission.startswith(":")):
        raise ValueError(f"permission {permission!r} is not of the form 'area:action'")

    def mark(fn: F) -> F:
        setattr(fn, PERMISSION_ATTRIBUTE, permission)
        return fn

    return mark


DEPRECATION_ATTRIBUTE = "__pgfleet_deprecation__"
# Seed 003's versioning policy: a deprecated route is announced at least six months before it
# goes (its Sunset).
MIN_NOTICE_DAYS = 182


@dataclass(frozen=True)
class Deprecation:
    """When a route was deprecated and when it goes, as response headers: `Deprecation`
    (RFC 9745: `@<epoch seconds>`), `Sunset` (RFC 8594: an HTTP date) and, with `link`, a
    `Link: <...>; rel="deprecation"` to what replaces it."""

    since: date
    sunset: date
    link: str | None = None

    def headers(self) -> dict[str, str]:
        since = datetime.combine(self.since, dt_time(), UTC)
        sunset = datetime.combine(self.sunset, dt_time(), UTC)
        headers = {
            "Deprecation": f"@{int(since.timestamp())}",
            "Sunset": format_datetime(sunset, usegmt=True),
        }
        if self.link:
            headers["Link"] = f'<{self.link}>; rel="deprecation"'
        return headers


def deprecated(since: date, sunset: date, link: str | None = None) -> Callable[[F], F]:
    """Mark a route deprecated: every answer of it carries the Deprecation and Sunset headers.
    The sunset must leave the seed's six months of notice (ValueError otherwise)."""
    if (sunset - since).days < MIN_NOTICE_DAYS:
        raise ValueError(f"sunset {sunset} is less than {MIN_NOTICE_DAYS} days after {since}")
    notice = Deprecation(since, sunset, link)

    def mark(fn: F) -> F:
        setattr(fn, DEPRECATION_ATTRIBUTE, notice)
        return fn

    return mark


def deprecation_of(fn: Callable[..., Any]) -> Deprecation | None:
    value = getattr(fn, DEPRECATION_ATTRIBUTE, None)
    return value if isinstance(value, Deprecation) else None


def permission_of(fn: Callable[..., Any]) -> str | None:
    """The permission declared on a route function, or None when it declares none."""
    value = getattr(fn, PERMISSION_ATTRIBUTE, None)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Mount:
    router: Router
    prefix: str = ""


@dataclass(frozen=True)
class Domain:
    """One API domain. `name` is its folder under `pgfleet/domains/`."""

    name: str
    mounts: tuple[Mount, ...] = ()
    workflows: tuple[Workflow, ...] = ()
    tasks: dict[str, ScheduledTask] = field(default_factory=dict)
    schedules: tuple[Schedule, ...] = ()
    cascades: tuple[Cascade, ...] = ()
    messages: dict[str, MessageHandler] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for schedule in self.schedules:
            task = (schedule.payload or {}).get("task")
            if task not in self.tasks:
                raise ValueError(f"domain {self.name}: schedule {schedule.name} fires unknown task {task!r}")
