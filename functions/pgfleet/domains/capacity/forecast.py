"""Growth models for one utilization series, chosen by how well each predicts the series' own
recent past (a holdout backtest), with prediction intervals.

Candidates, each a least-squares fit of a design matrix (numpy, imported when a fit runs, so
the API's cold start does not pay for it):
- STABLE: a constant (the mean);
- LINEAR: a + b·t;
- EXPONENTIAL: log y = a + b·t (positive series only);
- SEASONAL: a + b·t + one mean per phase of a daily (24 hourly phases) or weekly (7 daily
  phases) period, when the series spans at least two periods with every phase seen twice
  (the period that backtests better).

The last HOLDOUT_SHARE of the points is held out; each candidate is fitted on the rest and
scored by its mean absolute percentage error on the held-out points. The lowest error wins,
except that a model must beat a simpler one by SIMPLER_MARGIN to be chosen over it, and a
series whose LINEAR slope is not significant (|t| < 2 on all points) is STABLE. The chosen
model is refitted on every point; its forecasts carry 95 % prediction intervals from the fit's
residuals (`s·sqrt(1 + x₀ᵀ(XᵀX)⁻¹x₀)`, in log space for EXPONENTIAL). `confidenceLevel` is
100 minus the backtest error in percent (0 to 100). Time to capacity is the first moment the
upper bound of the interval reaches the capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MIN_POINTS = 6
HOLDOUT_SHARE = 0.2
SIMPLER_MARGIN = 0.1  # a more complex model must cut the simpler one's error by a tenth
Z95 = 1.96
HORIZONS = (7.0, 30.0, 90.0, 365.0)
MAX_DAYS = 3650.0
ORDER = ("STABLE", "LINEAR", "EXPONENTIAL", "SEASONAL")


def _phase(t: Any, period: float, phases: int) -> Any:
    """The phase (0..phases-1) of each time; a hair added so k/24 of a day is phase k."""
    import numpy as np

    return np.floor((t % period) / period * phases + 1e-6).astype(int) % phases


@dataclass
class Fit:
    pattern: str
    coefficients: Any
    residual_std: float
    xtx_inv: Any
    period_days: float | None = None
    phases: int = 0

    def design(self, t: Any) -> Any:
        import numpy as np

        t = np.atleast_1d(np.asarray(t, dtype=float))
        columns = [np.ones_like(t)]
        if self.pattern != "STABLE":
            columns.append(t)
        if self.pattern == "SEASONAL" and self.period_days:
            phase = _phase(t, self.period_days, self.phases)
            for k in range(1, self.phases):  # phase 0 is the intercept's
                columns.append((phase == k).astype(float))
        return np.column_stack(columns)

    def predict(self, t: Any) -> tuple[Any, Any, Any]:
        """Point forecast and the 95 % interval (low, high) at times `t` (days)."""
        import numpy as np

        x = self.design(t)
        mean = x @ self.coefficients
        spread = Z95 * self.residual_std * np.sqrt(1.0 + np.einsum("ij,jk,ik->i", x, self.xtx_inv, x))
        if self.pattern == "EXPONENTIAL":
            return np.exp(mean), np.exp(mean - spread), np.exp(mean + spread)
        return mean, mean - spread, mean + spread


def _fit(pattern: str, t: Any, y: Any, period: float | None = None, phases: int = 0) -> Fit | None:
    import numpy as np

    if pattern == "EXPONENTIAL":
        if np.any(y <= 0):
            return None
        y = np.log(y)
    fit = Fit(pattern, None, 0.0, None, period, phases)
    x = fit.design(t)
    if x.shape[0] <= x.shape[1]:
        return None
    coefficients, *_ = np.linalg.lstsq(x, y, rcond=None)
    residuals = y - x @ coefficients
    dof = max(1, x.shape[0] - x.shape[1])
    fit.coefficients = coefficients
    fit.residual_std = float(math.sqrt(float(residuals @ residuals) / dof))
    fit.xtx_inv = np.linalg.pinv(x.T @ x)
    return fit


def _seasonal_periods(t: Any) -> list[tuple[float, int]]:
    """The periods the series can carry: weekly (7 daily phases) when it spans two weeks,
    daily (24 hourly phases) when it spans two days, each with every phase seen twice."""
    import numpy as np

    span = float(t[-1] - t[0])
    found = []
    for period, phases in ((7.0, 7), (1.0, 24)):
        if span >= 2 * period:
            phase = _phase(t, period, phases)
            if np.bincount(phase, minlength=phases).min() >= 2:
                found.append((period, phases))
    return found


def _mape(fit: Fit, t: Any, y: Any) -> float:
    import numpy as np

    predicted, _, _ = fit.predict(t)
    scale = np.maximum(np.abs(y), 1e-9)
    return float(np.mean(np.abs(predicted - y) / scale))


def _slope_significant(t: Any, y: Any) -> bool:
    fit = _fit("LINEAR", t, y)
    if fit is None:
        return False
    slope = float(fit.coefficients[1])
    se = fit.residual_std * math.sqrt(float(fit.xtx_inv[1, 1]))
    return slope != 0.0 if se == 0.0 else abs(slope) / se >= 2.0


@dataclass
class Analysis:
    pattern: str | None
    reason: str | None = None
    backtest_errors: dict[str, float] = field(default_factory=dict)
    confidence: float | None = None
    growth_rate_percent: float | None = None
    forecasts: dict[str, dict[str, float | None]] = field(default_factory=dict)
    time_to_capacity_days: float | None = None
    fit: Fit | None = None
    last_t: float = 0.0
    last_value: float = 0.0


def analyze(t_days: list[float], values: list[float], capacity: float | None) -> Analysis:
    """The growth analysis of one series (times in days, any origin; ascending)."""
    import numpy as np

    if len(values) < MIN_POINTS:
        return Analysis(
            None, f"{len(values)} measurement(s): at least {MIN_POINTS} are needed to fit a model"
        )
    t = np.asarray(t_days, dtype=float)
    y = np.asarray(values, dtype=float)
    if float(t[-1] - t[0]) <= 0:
        return Analysis(None, "every measurement has the same time")
    split = max(MIN_POINTS - 2, int(round(len(t) * (1 - HOLDOUT_SHARE))))
    split = min(split, len(t) - 2)
    train_t, train_y, test_t, test_y = t[:split], y[:split], t[split:], y[split:]
    errors: dict[str, float] = {}
    for pattern in ORDER[:-1]:
        fit = _fit(pattern, train_t, train_y)
        if fit is not None:
            errors[pattern] = _mape(fit, test_t, test_y)
    seasonal: tuple[float, int] | None = None
    for period, phases in _seasonal_periods(train_t):
        fit = _fit("SEASONAL", train_t, train_y, period, phases)
        if fit is not None and _mape(fit, test_t, test_y) < errors.get("SEASONAL", math.inf):
            errors["SEASONAL"], seasonal = _mape(fit, test_t, test_y), (period, phases)
    if not errors:
        return Analysis(None, "no model could be fitted to the series")
    chosen = "STABLE" if "STABLE" in errors else min(errors, key=errors.__getitem__)
    for pattern in ORDER[1:]:
        if pattern in errors and errors[pattern] < errors[chosen] * (1 - SIMPLER_MARGIN):
            chosen = pattern
    if chosen == "LINEAR" and not _slope_significant(t, y):
        chosen = "STABLE"
    fit = None
    # The refit on every point may fail where the training part fitted (a zero at the end of
    # a series an exponential needs positive): the next best model then.
    for pattern in [chosen, *sorted((p for p in errors if p != chosen), key=errors.__getitem__)]:
        fit = _fit(pattern, t, y, *seasonal) if pattern == "SEASONAL" and seasonal else _fit(pattern, t, y)
        if fit is not None:
            chosen = pattern
            break
    if fit is None:
        return Analysis(None, "no model could be fitted to the whole series")
    result = Analysis(chosen, backtest_errors={k: round(v * 100, 3) for k, v in errors.items()}, fit=fit,
                      last_t=float(t[-1]), last_value=float(y[-1]))  # fmt: skip
    result.confidence = round(max(0.0, min(100.0, 100.0 * (1 - errors[chosen]))), 1)
    now_mean, _, _ = fit.predict([t[-1]])
    day_after, _, _ = fit.predict([t[-1] + 1.0])
    base = float(now_mean[0])
    rate = 100.0 * (float(day_after[0]) - base) / base if base else math.nan
    result.growth_rate_percent = round(rate, 4) if math.isfinite(rate) else None
    if chosen == "STABLE":
        result.growth_rate_percent = 0.0
    for days in HORIZONS:
        mean, low, high = fit.predict([t[-1] + days])
        # An exponential fit of a fast series overflows far out: no number rather than inf.
        result.forecasts[f"{int(days)}d"] = {
            "value": _finite(mean[0]),
            "low": _finite(low[0]),
            "high": _finite(high[0]),
        }
    if capacity and chosen != "STABLE":
        result.time_to_capacity_days = time_to_capacity(fit, float(t[-1]), capacity)
    elif capacity and (result.forecasts["30d"]["value"] or 0) >= capacity:
        result.time_to_capacity_days = (
            0.0  # a stable series at or over capacity is full now, not in the noise
        )
    return result


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) and abs(number) < 1e300 else None


def time_to_capacity(fit: Fit, last_t: float, capacity: float) -> float | None:
    """Days from `last_t` until the interval's upper bound reaches `capacity` (0 when it
    already does), None when it does not within MAX_DAYS."""
    import numpy as np

    _, _, high_now = fit.predict([last_t])
    if float(high_now[0]) >= capacity:
        return 0.0
    steps = np.concatenate(
        [np.arange(0.01, 1, 0.01), np.arange(1, 30, 0.25), np.arange(30, MAX_DAYS + 1, 1.0)]
    )
    _, _, high = fit.predict(last_t + steps)
    crossed = np.nonzero(high >= capacity)[0]
    if not crossed.size:
        return None
    k = int(crossed[0])
    if k == 0:
        return round(float(steps[0]), 2)
    fine = np.linspace(steps[k - 1], steps[k], 101)  # the step it crossed in, to a hundredth of it
    _, _, high = fit.predict(last_t + fine)
    return round(float(fine[int(np.nonzero(high >= capacity)[0][0])]), 2)


def predict_linear(t_days: list[float], values: list[float], horizon_days: float) -> float:
    """Prometheus's predict_linear: one least-squares line over the window, extrapolated."""
    import numpy as np

    t = np.asarray(t_days, dtype=float)
    slope, intercept = np.polyfit(t, np.asarray(values, dtype=float), 1)
    return float(intercept + slope * (t[-1] + horizon_days))
