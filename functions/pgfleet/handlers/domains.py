"""The list of domains. Adding a domain is adding its folder under `pgfleet/domains/` and
one line here; the handlers, the local stack and the deployment checks read this list.

Order matters only for the router mounts that share a prefix (none overlap today).
"""

from __future__ import annotations

import functools
from typing import Any

from pgfleet.core import operations
from pgfleet.core.domain import Domain, MessageHandler, ScheduledTask
from pgfleet.domains import (
    archive,
    backups,
    capacity,
    clusters,
    compliance,
    events,
    instances,
    locks,
    maintenance,
    migrations,
    monitoring,
    notifications,
    performance,
    platform,
    quotas,
    reconcile,
    replicas,
    security,
    servers,
    sizing,
    system,
    tenants,
    upgrades,
)
from pgfleet.domains import (
    operations as operations_domain,
)
from pgfleet.ports.scheduler import Schedule

DOMAINS: tuple[Domain, ...] = (
    platform.DOMAIN,
    operations_domain.DOMAIN,
    archive.DOMAIN,
    instances.DOMAIN,
    replicas.DOMAIN,
    clusters.DOMAIN,
    migrations.DOMAIN,
    servers.DOMAIN,
    tenants.DOMAIN,
    monitoring.DOMAIN,
    notifications.DOMAIN,
    performance.DOMAIN,
    quotas.DOMAIN,
    sizing.DOMAIN,
    upgrades.DOMAIN,
    backups.DOMAIN,
    locks.DOMAIN,
    maintenance.DOMAIN,
    events.DOMAIN,
    capacity.DOMAIN,
    reconcile.DOMAIN,
    security.DOMAIN,
    compliance.DOMAIN,
    system.DOMAIN,
)


@functools.cache
def install() -> tuple[Domain, ...]:
    """Register every domain's workflows and cascades with the operation engine (once)."""
    for domain in DOMAINS:
        for workflow in domain.workflows:
            if workflow.type in operations.WORKFLOWS and operations.WORKFLOWS[workflow.type] is not workflow:
                raise ValueError(f"workflow {workflow.type} is declared twice")
            operations.register(workflow)
        for cascade in domain.cascades:
            operations.register_cascade(cascade)
    return DOMAINS


def tasks() -> dict[str, ScheduledTask]:
    """Scheduled task name -> function, from every manifest."""
    found: dict[str, ScheduledTask] = {}
    for domain in DOMAINS:
        for name, fn in domain.tasks.items():
            if name in found:
                raise ValueError(f"scheduled task {name} is declared twice")
            found[name] = fn
    return found


def message_handlers() -> dict[str, MessageHandler]:
    """Queue message type -> handler, from every manifest (operations are not among them)."""
    found: dict[str, MessageHandler] = {}
    for domain in DOMAINS:
        for name, fn in domain.messages.items():
            if name in found:
                raise ValueError(f"message type {name} is declared twice")
            found[name] = fn
    return found


def platform_schedules() -> list[Schedule]:
    """The schedules every deployment has (reconcile, quotas, backup expiry...), from the
    manifests. `template.yaml` and `infra/` declare exactly these (a test compares them)."""
    return [schedule for domain in DOMAINS for schedule in domain.schedules]


def describe() -> list[dict[str, Any]]:
    """What each domain declares, for the closing checks and the README."""
    return [
        {
            "name": d.name,
            "mounts": [m.prefix for m in d.mounts],
            "workflows": [w.type for w in d.workflows],
            "tasks": sorted(d.tasks),
            "schedules": [s.name for s in d.schedules],
        }
        for d in DOMAINS
    ]
