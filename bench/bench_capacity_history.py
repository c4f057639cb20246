"""Capacity forecasts through the whole path (issue 17's quality goal, end to end): the
synthetic histories of bench_capacity_forecast.py (28 days, hourly, 1 % noise; LINEAR,
EXPONENTIAL, daily-SEASONAL, STABLE) are written into the local stack's history store
(DynamoDB on the moto server) with past timestamps, as captures of one tenant, and
`POST /api/v1/capacity/growth/analyze` classifies and forecasts them. Goals: each classified as
its truth, its 30-day forecast within 10 % of the truth. Beside it, `predict_linear` (one
least-squares line over the window) on the same data; and the time of the analyze call.

Run: `PYTHONPATH=functions .venv/bin/python bench/bench_capacity_history.py`
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from _stack import local_stack
from bench_capacity_forecast import DAYS, STEP, TRUTHS

TENANT = "bench"


def main() -> None:
    with local_stack() as stack:
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith(("PGFLEET_", "AWS_"))})
        from pgfleet.adapters.history import DynamoDBHistoryStore
        from pgfleet.core.settings import get_settings
        from pgfleet.domains.capacity import capture, forecast
        from pgfleet.ports.history import HistoryRecord

        get_settings.cache_clear()
        store = DynamoDBHistoryStore(get_settings().history_table_name)
        t = np.arange(0, DAYS, STEP)
        origin = datetime.now(UTC) - timedelta(days=DAYS)
        series = {}
        started = time.perf_counter()
        for seed, (name, truth) in enumerate(TRUTHS.items()):
            rng = np.random.default_rng(seed + 1)
            y = truth(t) * (1 + rng.normal(0, 0.01, t.size))
            rid = f"synthetic-{name.lower()}"
            series[rid] = (name, truth, y)
            store.append(capture.STREAM, [
                HistoryRecord(stream=capture.STREAM, target_id=rid, tenant_id=TENANT, at=origin + timedelta(days=float(d)),
                              data={"tenant_id": TENANT, "target_id": rid, "resource_id": rid, "resource_type": "STORAGE",
                                    "current_usage": float(v), "capacity": 1000.0, "unit": "GB", "status": "NORMAL",
                                    "utilization_percentage": round(float(v) / 10, 3)},
                              ttl_seconds=capture.TTL_SECONDS)
                for d, v in zip(t, y, strict=True)
            ])  # fmt: skip
        written = time.perf_counter() - started
        token = stack.token("operator", TENANT)
        started = time.perf_counter()
        status, body = stack.request("POST", "/api/v1/capacity/growth/analyze", {"analysisDays": 29}, token)
        analyzed = time.perf_counter() - started
        assert status == 200, body
        print(f"{sum(len(s[2]) for s in series.values())} records written in {written:.2f} s; "
              f"growth/analyze of {len(body['data'])} series: {analyzed:.2f} s\n")  # fmt: skip
        print(f"{'truth':<12} {'chosen':<12} {'conf':>5} {'30d err':>8} {'predict_linear err':>19}")
        met = True
        for pattern in body["data"]:
            name, truth, y = series[pattern["resourceId"]]
            true30 = float(truth(np.array([t[-1] + 30]))[0])
            ours = abs(pattern["forecast30d"] - true30) / true30
            plain = abs(forecast.predict_linear(list(t), list(y), 30) - true30) / true30
            ok = pattern["patternType"] == name and ours <= 0.10
            met &= ok
            print(f"{name:<12} {pattern['patternType'] or '-':<12} {pattern['confidenceLevel'] or 0:>5.1f} "
                  f"{ours:>8.2%} {plain:>19.2%}  points {pattern['points']}")  # fmt: skip
        met &= len(body["data"]) == len(series)
        print(f"\ngoal (every truth classified, 30-day forecast within 10 %): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
