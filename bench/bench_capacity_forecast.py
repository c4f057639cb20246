"""Capacity forecasts against known truth (issue 17's quality goal): synthetic utilization
histories (28 days, hourly, 1 % multiplicative noise; deterministic seeds) whose truth is
LINEAR, EXPONENTIAL, daily-SEASONAL or STABLE go through the growth analysis that
`POST /api/v1/capacity/growth/analyze` runs (pgfleet.domains.capacity.forecast.analyze). Goals:
each is classified as its truth, and its 30-day forecast is within 10 % of the truth. Beside
it, Prometheus's `predict_linear` (one least-squares line over the window) on the same data,
with its 30-day error, and each one's time for the fit.

Run: `PYTHONPATH=functions .venv/bin/python bench/bench_capacity_forecast.py`
"""

from __future__ import annotations

import math
import time

import numpy as np

from pgfleet.domains.capacity import forecast

DAYS, STEP = 28.0, 1 / 24
TRUTHS = {
    "LINEAR": lambda t: 100 + 2.0 * t,
    "EXPONENTIAL": lambda t: 100 * np.exp(0.04 * t),
    "SEASONAL": lambda t: 200 + 0.1 * t + 30 * np.sin(2 * math.pi * t),
    "STABLE": lambda t: 150 + 0 * t,
}


def main() -> None:
    t = np.arange(0, DAYS, STEP)
    met = True
    print(
        f"{'truth':<12} {'chosen':<12} {'conf':>5} {'30d err':>8} {'predict_linear err':>19} {'fit s':>6}  backtest MAPE %"
    )
    for seed, (name, truth) in enumerate(TRUTHS.items()):
        rng = np.random.default_rng(seed + 1)
        y = truth(t) * (1 + rng.normal(0, 0.01, t.size))
        started = time.perf_counter()
        result = forecast.analyze(list(t), list(y), capacity=1000.0)
        elapsed = time.perf_counter() - started
        true30 = float(truth(np.array([t[-1] + 30]))[0])
        ours = abs(result.forecasts["30d"]["value"] - true30) / true30
        plain = abs(forecast.predict_linear(list(t), list(y), 30) - true30) / true30
        ok = result.pattern == name and ours <= 0.10
        met &= ok
        print(f"{name:<12} {result.pattern or '-':<12} {result.confidence or 0:>5.1f} {ours:>8.2%} {plain:>19.2%} "
              f"{elapsed:>6.3f}  {result.backtest_errors}")  # fmt: skip
        interval = result.forecasts["30d"]
        print(f"{'':<12} 30d forecast {interval['value']:.1f} in [{interval['low']:.1f}, {interval['high']:.1f}], "
              f"truth {true30:.1f}; time to 1000: {result.time_to_capacity_days} days")  # fmt: skip
    print(f"\ngoal (every truth classified, 30-day forecast within 10 %): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
