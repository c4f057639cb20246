"""Request telemetry of this process, in Prometheus' data model (`prometheus_client`).

The api handler observes every request here (route template, method, status, seconds) and
counts rate-limit rejections; `GET /api/metrics` exposes this registry with the fleet's own
series. In AWS every Lambda instance holds its own registry: there the durable aggregate is the
EMF metrics each request also emits (CloudWatch), and the API-metrics history records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric

REGISTRY = CollectorRegistry(auto_describe=True)
# What `GET /api/metrics` answers with: the text format, version 0.0.4, which every Prometheus
# reads (`generate_latest` writes it; 1.0.0, this library's "latest", only adds UTF-8 names).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Buckets around the seed's goals (< 200 ms average; p99 <= 50 ms for a GET).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "pgfleet_api_requests",
    "API requests answered, by route template, method and status code",
    ("route", "method", "status"),
    registry=REGISTRY,
)
LATENCY = Histogram(
    "pgfleet_api_request_duration_seconds",
    "Time from receiving a request to answering it, by route template, method and status code",
    ("route", "method", "status"),
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "pgfleet_api_rate_limited",
    "Requests refused with 429 by the rate limiter, by plan and window",
    ("plan", "window"),
    registry=REGISTRY,
)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request. `route` is the route's template (`/api/v1/postgres/single/
    <instance_id>`), never the raw path: ids would make one series per resource."""
    labels = (route, method, str(status))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(seconds)


def count_rate_limited(plan: str, window: str) -> None:
    RATE_LIMITED.labels(plan, window).inc()


class _Measured:
    """Families measured once, for one exposition: a collector its registry reads once."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def exposition(families: Iterable[Metric], *, with_requests: bool) -> bytes:
    """The text exposition of `families` (measured by the caller for this scrape), after this
    process's request and rate-limit series when `with_requests`."""
    measured = CollectorRegistry()
    measured.register(_Measured(families))
    text = generate_latest(measured)
    return generate_latest(REGISTRY) + text if with_requests else text
