"""What follows a capture: spikes, and the platform schedule's threshold evaluation.

A utilization spike is the seed's `handleUtilizationSpike`: a resource whose usage grew more
than SPIKE_PERCENT over the last 7 days (the latest capture against the earliest of the 7
days) is analyzed at once on those 7 days, and subscribers get `capacity:utilization_spike`
with the growth and the time to capacity that analysis found (its forecasts are kept, so
`forecast_updated` and any `capacity_warning` follow). A jump that analysis finds STABLE (no
significant slope: noise, as CPU has) is no spike.

The hourly capture schedule also evaluates every active threshold, as the seed's monitoring
loop does, so alerts fire and resolve without a caller.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core.auth import ALL, PLATFORM, Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import NotFound
from pgfleet.domains import servers
from pgfleet.domains.capacity import capture, push, service, thresholds

SPIKE_PERCENT = 5.0
SPIKE_DAYS = 7
# The platform's own caller: the schedule sees every tenant, as a platform token does.
SCHEDULER = Principal(sub="scheduler", tenant_id=PLATFORM, roles=("admin",), permissions=frozenset({ALL}))


def _earliest(
    ports: Ports, target_ids: set[str], start: datetime, end: datetime
) -> dict[tuple[str, str], dict[str, Any]]:
    """The earliest usage of each (resource, type) of these targets within [start, end)."""
    first: dict[tuple[str, str], dict[str, Any]] = {}

    def keep(record: Any) -> None:
        key = (record.data.get("resource_id"), record.data.get("resource_type"))
        if key not in first:
            first[key] = {**record.data, "at": record.at}

    for target_id in sorted(target_ids):
        ports.history.query(capture.STREAM, start=start, end=end, target_id=target_id, page=1, page_size=1,
                            newest_first=False, visit=keep)  # fmt: skip
    return first


def spikes(ports: Ports, items: list[dict[str, Any]], now: datetime) -> list[str]:
    """Analyze and announce every captured resource that spiked; what was found."""
    if not items:
        return []
    earliest = _earliest(ports, {i["target_id"] for i in items}, now - timedelta(days=SPIKE_DAYS), now)
    found = []
    for item in items:
        before = earliest.get((item["resource_id"], item["resource_type"]))
        if before is None or float(before["current_usage"]) <= 0:
            continue
        growth = (
            100.0
            * (float(item["current_usage"]) - float(before["current_usage"]))
            / float(before["current_usage"])
        )
        if growth <= SPIKE_PERCENT:
            continue
        try:
            views = service.analyze(
                ports, SCHEDULER, item["target_id"], None, item["resource_type"], SPIKE_DAYS
            )
        except NotFound:  # deleted since its capture
            continue
        view = next((v for v in views if v["resource_id"] == item["resource_id"]), None)
        if view is not None and view["pattern_type"] == "STABLE":
            continue  # the jump is within the series' noise (a busy hour of CPU): no spike
        push.utilization_spike(ports, item, growth, view)
        found.append(
            f"{item['resource_type']} of {item['resource_id']} grew {growth:.1f}% in {SPIKE_DAYS} days"
        )
    return found


def capture_and_follow(
    ports: Ports, found: list[servers.Target]
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Capture, then look for spikes: (items, problems, spikes)."""
    now = datetime.now(UTC)
    items, problems = capture.capture(ports, found, now)
    return items, problems, spikes(ports, items, now + timedelta(seconds=1))


def scheduled_capture(ports: Ports, detail: dict[str, Any]) -> list[str]:
    found = [t for t in (servers.Target(s) for s in servers.all_servers(ports)) if t.running]
    items, problems, spiked = capture_and_follow(ports, found)
    evaluations, opened = thresholds.evaluate(ports, SCHEDULER, None)
    exceeded = sum(1 for e in evaluations if e["threshold_exceeded"])
    return [
        f"captured {len(items)} utilization figure(s) of {len(found)} server(s)",
        f"{len(evaluations)} threshold evaluation(s): {exceeded} exceeded, {opened} alert(s) raised",
        *(f"spike: {s}" for s in spiked),
        *problems,
    ]
