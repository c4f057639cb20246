"""reconcile: bring every instance, cluster and replica back to its desired state, every
minute and when the local stack starts. No routes."""

from pgfleet.core.domain import Domain
from pgfleet.domains.reconcile import service

DOMAIN = Domain(
    name="reconcile",
    tasks={"reconcile": service.run},
    schedules=(service.RECONCILE_SCHEDULE,),
)

__all__ = ["DOMAIN"]
