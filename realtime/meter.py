"""Rate and latency meters with an injectable clock, so tests can feed fake timestamps."""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class RateMeter:
    """Events per second over a sliding window of timestamps.

    n events span n-1 intervals, so the rate is (n-1)/span, not n/span.
    """

    def __init__(self, window: int = 30, clock: Clock = time.perf_counter) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2 events, got {window}")
        self._stamps: deque[float] = deque(maxlen=window)
        self._clock = clock
        self.count = 0

    def tick(self, stamp: float | None = None) -> None:
        self._stamps.append(self._clock() if stamp is None else stamp)
        self.count += 1

    @property
    def rate(self) -> float:
        if len(self._stamps) < 2:
            return 0.0
        span = self._stamps[-1] - self._stamps[0]
        return (len(self._stamps) - 1) / span if span > 0 else 0.0


class DurationMeter:
    """Recent durations in milliseconds: the median over a sliding window (one slow frame moves nothing)."""

    def __init__(self, window: int = 30) -> None:
        self._values: deque[float] = deque(maxlen=window)
        self.total = 0

    def add_seconds(self, seconds: float) -> None:
        self._values.append(seconds * 1000.0)
        self.total += 1

    @property
    def ms(self) -> float:
        return float(statistics.median(self._values)) if self._values else 0.0

    @property
    def values_ms(self) -> list[float]:
        return list(self._values)
