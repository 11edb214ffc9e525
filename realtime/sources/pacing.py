"""Frame pacing: deliver frame i at start + i / fps, as a camera would, never faster.

One clock for every paced thing: the demo source, the benchmark's looping source and the
camera-rate display of a video file.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """Sleeps until frame `index` is due; with fps <= 0 it never waits."""

    def __init__(
        self,
        fps: float,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.fps, self.clock, self.sleep = fps, clock, sleep
        self.start: tuple[int, float] | None = None  # (first index, its time)

    def restart(self) -> None:
        self.start = None

    def wait(self, index: int) -> None:
        """Return when frame `index` is due; the first index seen starts the clock."""
        if self.fps <= 0:
            return
        if self.start is None:
            self.start = (index, self.clock())
            return
        due = self.start[1] + (index - self.start[0]) / self.fps
        wait = due - self.clock()
        if wait > 0:
            self.sleep(wait)
