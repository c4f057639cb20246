"""The growth models chosen by backtest (pgfleet.domains.capacity.forecast): known truths with
noise are classified as themselves and forecast within 10 % at 30 days; too short a history
gives no pattern and a reason; a series no exponential can refit falls back; overflow is no
number, never inf."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pgfleet.domains.capacity import forecast

T = np.arange(0, 28, 1 / 24)
TRUTHS = {
    "LINEAR": lambda t: 100 + 2.0 * t,
    "EXPONENTIAL": lambda t: 100 * np.exp(0.04 * t),
    "SEASONAL": lambda t: 200 + 0.1 * t + 30 * np.sin(2 * math.pi * t),
    "STABLE": lambda t: 150 + 0 * t,
}


@pytest.mark.parametrize("name", list(TRUTHS))
def test_a_known_truth_is_classified_and_forecast_within_ten_percent(name: str) -> None:
    truth = TRUTHS[name]
    y = truth(T) * (1 + np.random.default_rng(7).normal(0, 0.01, T.size))
    result = forecast.analyze(list(T), list(y), capacity=1000.0)
    assert result.pattern == name, result.backtest_errors
    true30 = float(truth(np.array([T[-1] + 30]))[0])
    got = result.forecasts["30d"]
    assert got["value"] is not None and abs(got["value"] - true30) / true30 < 0.10
    assert got["low"] is not None and got["high"] is not None and got["low"] <= got["value"] <= got["high"]
    assert 0 < (result.confidence or 0) <= 100


def test_time_to_capacity_is_where_the_upper_bound_crosses() -> None:
    y = 100 + 10.0 * T
    result = forecast.analyze(list(T), list(y), capacity=500.0)
    assert result.pattern == "LINEAR"
    # the line reaches 500 at t = 40 days, 12 days after the last point; the bound a little before
    assert result.time_to_capacity_days is not None and 10 < result.time_to_capacity_days <= 12.1
    assert forecast.analyze(list(T), list(150 + 0 * T), capacity=500.0).time_to_capacity_days is None


def test_too_short_a_history_has_no_pattern_and_says_why() -> None:
    result = forecast.analyze([0.0, 0.1, 0.2], [1.0, 2.0, 3.0], capacity=10.0)
    assert result.pattern is None and "at least 6" in (result.reason or "") and not result.forecasts


def test_a_zero_at_the_end_falls_back_and_overflow_is_no_number() -> None:
    t = [i / 100 for i in range(20)]
    values = [math.exp(30 * x) for x in t[:-1]] + [0.0]  # the exponential cannot refit with the zero
    result = forecast.analyze(t, values, capacity=1e6)
    assert result.pattern in ("LINEAR", "STABLE", "SEASONAL")
    fast = forecast.analyze(t, [math.exp(60 * x) for x in t], capacity=1e6)
    assert fast.pattern == "EXPONENTIAL"
    assert fast.forecasts["365d"]["value"] is None  # exp(60 x 365): no number rather than inf


def test_predict_linear_is_one_line() -> None:
    assert forecast.predict_linear([0, 1, 2, 3], [0, 2, 4, 6], 2) == pytest.approx(10.0)
