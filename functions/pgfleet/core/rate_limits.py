"""Rate limits of the API (seed 003, "Rate Limiting"), as data.

Plans: standard 1,000 requests/hour, premium 5,000, system 10,000, each with a burst limit
per minute (the seed's 100/minute; the system plan's is 200/minute so that its hourly figure
is reachable; a deployment may set other figures, `PGFLEET_RATE_LIMITS`). A caller's plan is
the `plan` claim of its token, else its tenant's setting (`PGFLEET_TENANT_PLANS`), else
standard.

Windows are fixed: the hour and the minute of the request, counted per user of a tenant in a
shared RateCounter (DynamoDB: one atomic update per request, a TTL to forget), so every API
process enforces the same count. A request over either limit is refused with 429 and
`Retry-After` (seconds until that window ends). Every limited response carries
`X-RateLimit-Limit` (the plan's hourly limit), `X-RateLimit-Remaining` (what is left before
the first limit bites) and `X-RateLimit-Reset` (epoch seconds when that window ends). The
counter failing does not take the API down: the request goes through, and the log says so.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, RateLimited, StoreError, Unauthorized

log = logging.getLogger("pgfleet.rate_limits")


@dataclass(frozen=True)
class Plan:
    name: str
    per_hour: int
    per_minute: int


PLANS: dict[str, Plan] = {
    plan.name: plan
    for plan in (
        Plan("standard", 1_000, 100),
        Plan("premium", 5_000, 100),
        Plan("system", 10_000, 200),
    )
}
DEFAULT_PLAN = "standard"


@dataclass(frozen=True)
class Decision:
    plan: Plan
    allowed: bool
    remaining: int
    reset_at: int  # epoch seconds
    retry_after: int | None = None  # seconds, when refused
    window: str | None = None  # "minute" or "hour", when refused

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.plan.per_hour),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def error(self) -> RateLimited:
        limit = self.plan.per_minute if self.window == "minute" else self.plan.per_hour
        return RateLimited(
            f"rate limit of the {self.plan.name} plan reached: {limit} requests per {self.window}; "
            f"retry after {self.retry_after} s",
            details={
                "plan": self.plan.name,
                "window": self.window,
                "limit": limit,
                "retry_after_seconds": self.retry_after,
            },
        )


def plans(limits: tuple[tuple[str, str], ...] = ()) -> dict[str, Plan]:
    """The plans, with the limits a deployment sets (`PGFLEET_RATE_LIMITS`,
    "standard=2000/100": per hour / per minute) in place of the seed's."""
    out = dict(PLANS)
    for name, value in limits:
        if name not in PLANS:
            raise ValueError(f"PGFLEET_RATE_LIMITS: unknown plan {name!r}; known: {', '.join(PLANS)}")
        hour, sep, minute = value.partition("/")
        if not (sep and hour.isdigit() and minute.isdigit() and int(hour) > 0 and int(minute) > 0):
            raise ValueError(f"PGFLEET_RATE_LIMITS: {name}={value!r} is not <per hour>/<per minute>")
        out[name] = Plan(name, int(hour), int(minute))
    return out


def plan_of(ports: Ports, principal: Principal) -> Plan:
    """The caller's plan: its token's `plan` claim, else its tenant's setting, else standard.
    A plan this API does not know is a malformed token (401)."""
    name = principal.plan or dict(ports.settings.tenant_plans).get(principal.tenant_id) or DEFAULT_PLAN
    plan = plans(ports.settings.plan_limits).get(name)
    if plan is None:
        raise Unauthorized(f"invalid token: unknown plan {name!r}; known: {', '.join(PLANS)}")
    return plan


def check(
    ports: Ports, principal: Principal, now: float | None = None, plan: Plan | None = None
) -> Decision | None:
    """Count this request of `principal` (on `plan`, else its own) and say whether it may go
    on. None when the counter could not be reached (the request goes on)."""
    plan = plan or plan_of(ports, principal)
    now = time.time() if now is None else now
    hour_start = int(now // 3600 * 3600)
    minute = int((now - hour_start) // 60)
    minute_end = hour_start + (minute + 1) * 60
    hour_end = hour_start + 3600
    key = f"{principal.tenant_id}|{principal.sub}"
    try:
        counts = ports.rate_counter.hit(key, hour_start, minute, expires_at=hour_end + 3600)
    except StoreError as exc:
        log.warning("rate limit not enforced for this request: %s", exc)
        return None
    left_hour = plan.per_hour - counts.hour
    left_minute = plan.per_minute - counts.minute
    # The window that bites first sets Remaining and Reset.
    binding_end = minute_end if left_minute < left_hour else hour_end
    if counts.hour > plan.per_hour:
        return Decision(plan, False, 0, hour_end, max(1, math.ceil(hour_end - now)), "hour")
    if counts.minute > plan.per_minute:
        return Decision(plan, False, 0, minute_end, max(1, math.ceil(minute_end - now)), "minute")
    return Decision(plan, True, max(0, min(left_hour, left_minute)), binding_end)


# --- source addresses the API refuses (threat mitigations: pgfleet.domains.security) ---------
# One record holds every refused address and until when (epoch seconds). Each API process
# reads it at most every DENY_CACHE_SECONDS (one cached lookup per request); a process that
# writes it sees its change at once, the others within that time.
DENY_KIND = "api_source_deny"
DENY_ID = "sources"
DENY_CACHE_SECONDS = 5.0
_denied: tuple[float, dict[str, float]] | None = None


def denied_until(ports: Ports, address: str | None, now: float | None = None) -> float | None:
    """Until when (epoch seconds) the API refuses requests from `address`; None when it does
    not. A store that cannot be read refuses nobody (and the log says so)."""
    global _denied
    if not address:
        return None
    now = time.time() if now is None else now
    if _denied is None or time.monotonic() - _denied[0] > DENY_CACHE_SECONDS:
        try:
            record = ports.store.get(DENY_KIND, DENY_ID) or {}
        except StoreError as exc:
            log.warning("API deny list not read: %s", exc)
            record = {}
        _denied = (time.monotonic(), {str(k): float(v) for k, v in (record.get("sources") or {}).items()})
    until = _denied[1].get(address)
    return until if until is not None and until > now else None


def set_denied_sources(ports: Ports, sources: dict[str, float], at: str) -> None:
    """Replace the refused addresses ({address: until epoch seconds}); `at` is the ISO time."""
    global _denied
    stored = {k: int(v) for k, v in sorted(sources.items())}
    if ports.store.get(DENY_KIND, DENY_ID) is None:
        try:
            ports.store.create(
                DENY_KIND, {"id": DENY_ID, "tenant_id": "*", "created_at": at, "sources": stored}
            )
        except AlreadyExists:
            ports.store.update(DENY_KIND, DENY_ID, {"sources": stored, "updated_at": at})
    else:
        ports.store.update(DENY_KIND, DENY_ID, {"sources": stored, "updated_at": at})
    _denied = (time.monotonic(), dict(stored))
