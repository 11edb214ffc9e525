"""The live loop's meters behind one object: the schedulers and the loop book, `stats()` reads.

One place owns every rate and time the captions show, so neither the loop nor a scheduler
keeps a meter of its own, and both display rates report the same way.
"""

from __future__ import annotations

import time

from realtime.live.inference import Inference
from realtime.timing import Clock, DurationMeter, RateMeter, Stats

STAGES = ("resize", "inference", "cam", "overlay", "sink", "flow")  # wall time, shared cores included
CPU_STAGES = ("resize", "cam", "overlay", "flow")  # CPU time of the thread doing the stage

Stamp = tuple[float, float]  # (wall clock, thread CPU clock)


class Meters:
    """Display rate, model rate, model time, latency, each engine's time and every stage's wall and CPU time."""

    def __init__(self, engines: int, camera_rate: bool, clock: Clock = time.perf_counter) -> None:
        self.clock, self.camera_rate = clock, camera_rate
        self._display, self._model = RateMeter(30, clock), RateMeter(30, clock)
        self._model_time, self._latency = DurationMeter(30), DurationMeter(30)
        self._engines = [DurationMeter(30) for _ in range(engines)]
        self._stages = {name: DurationMeter(60) for name in STAGES}
        self._cpu = {name: DurationMeter(60) for name in CPU_STAGES}
        self._map_age: int | None = None

    @property
    def displayed(self) -> int:
        """Frames handed to the outputs so far."""
        return self._display.count

    def stamp(self) -> Stamp:
        """Now, on both clocks: the start of a timed stage."""
        return self.clock(), time.thread_time()

    def timed(self, stage: str, start: Stamp) -> Stamp:
        """Book `stage` as lasting from `start` until now; returns now."""
        now = self.stamp()
        self._stages[stage].add_seconds(now[0] - start[0])
        if stage in self._cpu:
            self._cpu[stage].add_seconds(now[1] - start[1])
        return now

    def inferred(self, done: Inference) -> None:
        """A model call came back: its engines' times, the model rate and the inference thread's stages."""
        for meter, result in zip(self._engines, done.results, strict=True):
            meter.add_seconds(result.seconds)
        model_s = sum(r.seconds for r in done.results)
        self._model_time.add_seconds(model_s)
        self._model.tick()
        self._stages["inference"].add_seconds(model_s)
        self._stages["resize"].add_seconds(done.resize_s)
        self._cpu["resize"].add_seconds(done.resize_cpu_s)

    def aged(self, map_age: int) -> None:
        """At camera rate: how many frames old the shown map is."""
        self._map_age = map_age

    def presented(self, drawn_at: float, captured_at: float | None) -> None:
        """A frame went to every output: the display rate, the sink time since `drawn_at`, the latency
        since `captured_at` (None: a frozen frame, whose capture time says nothing)."""
        now = self.clock()
        self._display.tick(now)
        self._stages["sink"].add_seconds(now - drawn_at)
        if captured_at is not None:
            self._latency.add_seconds(now - captured_at)

    def stats(self) -> Stats:
        return Stats(
            displayed=self._display.count,
            display_fps=self._display.rate,
            model_ms=self._model_time.ms,
            latency_ms=self._latency.ms,
            engine_ms=tuple(m.ms for m in self._engines),
            stage_ms={name: meter.ms for name, meter in self._stages.items()},
            stage_cpu_ms={name: meter.ms for name, meter in self._cpu.items()},
            model_fps=self._model.rate if self.camera_rate else None,
            map_age=self._map_age if self.camera_rate else None,
        )
