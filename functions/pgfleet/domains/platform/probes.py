"""Run probes of dependencies and servers side by side, for a bounded time.

A probe that has not answered when the time is up is reported as such and left to finish on
its own thread (each is bounded by its own client timeouts): the caller answers on time
whatever one dependency does. Probes run in the request's context (contextvars), so the
database work they do is charged to the request.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class Outcome(Generic[T_co]):
    """What one probe gave: its value, or the exception it raised, and how long it took;
    `seconds` is None when it did not finish in time (neither value nor error then)."""

    value: T_co | None
    error: Exception | None
    seconds: float | None

    @property
    def finished(self) -> bool:
        return self.seconds is not None


def _timed(fn: Callable[[], T]) -> Outcome[T]:
    started = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:  # an unreachable dependency is an outcome, not a failed request
        return Outcome(None, exc, time.perf_counter() - started)
    return Outcome(value, None, time.perf_counter() - started)


class Batch(Generic[T]):
    """Probes started at once (at most `workers` at a time), to be waited for until a moment."""

    def __init__(self, probes: Mapping[str, Callable[[], T]], workers: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(probes))),
                                        thread_name_prefix="pgfleet-probe")  # fmt: skip
        self._futures: dict[str, Future[Outcome[T]]] = {
            name: self._pool.submit(contextvars.copy_context().run, _timed, fn) for name, fn in probes.items()
        }

    def wait(self, deadline: float) -> dict[str, Outcome[T]]:
        """Wait until every probe has answered or `deadline` (time.monotonic()) has passed;
        an outcome per probe name, in the order given."""
        wait(self._futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        late: Outcome[T] = Outcome(None, None, None)
        return {
            name: future.result() if future.done() and not future.cancelled() else late
            for name, future in self._futures.items()
        }


def run(probes: Mapping[str, Callable[[], T]], timeout: float, workers: int = 8) -> dict[str, Outcome[T]]:
    """Run every probe at once and wait at most `timeout` seconds for all of them."""
    return Batch(probes, workers).wait(time.monotonic() + timeout)
