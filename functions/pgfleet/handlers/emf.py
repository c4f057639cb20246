"""API metrics as CloudWatch Embedded Metric Format, with Powertools Metrics (in AWS).

One EMF document per request on stdout, which Lambda ships to CloudWatch Logs and CloudWatch
turns into metrics: `ResponseTime` (ms), `Requests`, `DatabaseQueries`, `DatabaseTime` (ms),
`RequestBytes`, `ResponseBytes`, by route, method and status class (2xx, 4xx...: a bounded
set of dimensions). The status code, tenant and user go in as metadata, searchable in Logs
Insights but not dimensions (one metric per user would cost a metric per user).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = "pgfleet"
_metrics = Metrics(namespace=NAMESPACE, service="api")


def emit(record: dict[str, Any]) -> None:
    """Flush one request's metrics (the fields of an `api_metrics` record) as EMF."""
    _metrics.add_dimension(name="route", value=str(record["api_endpoint"]))
    _metrics.add_dimension(name="method", value=str(record["method"]))
    _metrics.add_dimension(name="status_class", value=f"{int(record['status_code']) // 100}xx")
    _metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    _metrics.add_metric(name="ResponseTime", unit=MetricUnit.Milliseconds, value=record["response_time_ms"])
    _metrics.add_metric(name="DatabaseQueries", unit=MetricUnit.Count, value=record["database_queries"])
    _metrics.add_metric(name="DatabaseTime", unit=MetricUnit.Milliseconds, value=record["database_time_ms"])
    _metrics.add_metric(name="RequestBytes", unit=MetricUnit.Bytes, value=record["request_size_bytes"])
    _metrics.add_metric(name="ResponseBytes", unit=MetricUnit.Bytes, value=record["response_size_bytes"])
    for key in ("status_code", "tenant_id", "user_id"):
        if record.get(key) is not None:
            _metrics.add_metadata(key=key, value=record[key])
    _metrics.flush_metrics()
