"""Benchmarks start their own local stack in a scratch PGFLEET_HOME (tests.helpers.LocalStack)."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "functions")]

from tests.helpers import LocalStack, running_stack  # noqa: E402


@contextmanager
def local_stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-bench-") as stack:
        yield stack


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(name: str, values: list[float], unit: str = "s") -> str:
    return (
        f"{name}: n={len(values)} min={min(values):.3f}{unit} p50={percentile(values, 50):.3f}{unit} "
        f"p95={percentile(values, 95):.3f}{unit} p99={percentile(values, 99):.3f}{unit} "
        f"max={max(values):.3f}{unit} mean={statistics.fmean(values):.3f}{unit}"
    )
