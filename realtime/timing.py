"""Rates and durations: meters with an injectable clock (tests feed fake timestamps), and the frozen
figures the captions, the browser and the summary line read from them."""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Stats:
    """The rates and times the captions show, as of the last displayed frame (0: not measured yet)."""

    displayed: int = 0
    display_fps: float = 0.0
    model_ms: float = 0.0  # every model's time for one frame, together
    latency_ms: float = 0.0
    engine_ms: tuple[float, ...] = ()  # each model's own time
    stage_ms: dict[str, float] = field(default_factory=dict)  # wall time, shared cores included
    stage_cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU time of the thread doing the stage
    model_fps: float | None = None  # set when display and model run at different rates
    map_age: int | None = None  # frames since the shown map's model frame
