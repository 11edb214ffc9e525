"""The live loop: sources -> scheduler -> panels -> outputs, wired and nothing more.

Threads:
- capture, one per source (sources.reader.LatestFrameReader): reads frames, keeps only the newest;
- inference, owned by the scheduler (live.scheduler.ModelRate or CameraRate): every model
  once on the newest frame of every source, as one batch;
- main (this loop): asks the scheduler for the next step, draws the mosaic, hands it to every
  output, reads the window's keys and the browser's controls, and hands the actions they ask
  for back to the outputs together with the frame that was on screen when they came.
Recordings encode on their own thread (outputs.recording.VideoRecorder), the browser view serves from
its own (outputs.browser.app). What is measured lives in live.timings.Meters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from realtime.engines.protocol import Engine
from realtime.engines.result import DetectResult, Result
from realtime.live.meters import Meters
from realtime.live.scheduler import CameraRate, ModelRate, Scheduler, Step
from realtime.maps import methods
from realtime.outputs.base import Output, Shown, stderr
from realtime.outputs.controls import QUIT, Controls
from realtime.sources.group import SourceSet
from realtime.timing import Stats
from realtime.view.hud import Hud
from realtime.view.mosaic import SourceRow, mosaic
from realtime.view.panels import ModelColumn, panel_names


@dataclass(frozen=True)
class RunSummary:
    displayed: int
    captured: int
    dropped: int
    bad_frames: int
    reconnects: int
    end_reason: str
    stats: Stats
    last_huds: tuple[Hud, ...]
    last_classes: tuple[int, ...]  # model 0, source 0


def explained_classes(result: Result) -> tuple[int, ...]:
    """The classes the first source's panel explains: a classifier's target columns, a detector's kept boxes'."""
    if isinstance(result, DetectResult):
        return tuple(int(c) for c in result.classes[0, : int(result.count[0])])
    return tuple(int(c) for c in result.classes[0])


class Loop:
    """Runs sources -> engines -> outputs until the sources end, a key quits, or max_frames."""

    def __init__(
        self,
        engines: Engine | Sequence[Engine],
        sources: SourceSet,
        controls: Controls,
        outputs: Sequence[Output] = (),
        display: str = "model",
        fit_mode: str = "squash",
        warp_maps: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        log: Callable[[str], None] = stderr,
    ) -> None:
        self.engines = list(engines) if isinstance(engines, Sequence) else [engines]
        if not self.engines:
            raise ValueError("the loop needs at least one model")
        self.provides = frozenset.intersection(*(e.provides for e in self.engines))
        method = controls.query.method
        lacking = methods.method(method).lacking(self.provides)
        if lacking:  # refused here, where the starting method is chosen; steering outputs check theirs
            usable = ", ".join(methods.usable_methods(self.provides))
            raise methods.MethodNeedsGradientsError(f"method {method} needs {lacking}; start with one of {usable}")
        self.sources, self.controls, self.outputs = sources, controls, list(outputs)
        self.display, self.fit_mode, self.warp_maps = display, fit_mode, warp_maps
        self.log = log  # the loop's own messages (none since methods are checked where they are chosen)
        self.names: list[str | None] = list(panel_names(self.engines)) if len(self.engines) > 1 else [None]
        self.meters = Meters(len(self.engines), display == "camera", clock)
        self.stop_requested = False
        self.last_huds: tuple[Hud, ...] = ()
        self.last_classes: tuple[int, ...] = ()

    def stats(self) -> Stats:
        return self.meters.stats()

    def _scheduler(self) -> Scheduler:
        if self.display == "camera":
            return CameraRate(self.engines, self.sources, self.meters, self.fit_mode, self.warp_maps)
        return ModelRate(self.engines, self.sources, self.meters, self.fit_mode)

    def _rows(self, step: Step) -> list[SourceRow]:
        """Each source's row: its frame, its maps from every model, and where they go on the frame."""
        done, lost = step.done, self.sources.lost()
        rows = []
        for s, (source, frame) in enumerate(zip(self.sources.sources, step.frames, strict=True)):
            regions = tuple(r[s] for r in step.regions)
            rows.append(
                SourceRow(
                    source.name, None if frame is None else frame.image, done.indices[s],
                    tuple(per_model[s] for per_model in step.maps), regions, lost[s] if s < len(lost) else "",
                    tuple(p[s] for p in done.placements),
                )
            )  # fmt: skip
        return rows

    def _present(self, step: Step) -> Shown:
        """Draw the step and hand it to every output; returns what they were shown."""
        start = self.meters.stamp()
        done, look = step.done, self.controls.look  # explained as inferred, shown as the look is now
        stats = self.stats()
        columns = [
            ModelColumn(result, self.names[m], done.class_ids[m], stats.engine_ms[m] or None)
            for m, result in enumerate(done.results)
        ]
        image, huds = mosaic(self._rows(step), columns, done.query, look, stats)
        drawn_at = self.meters.timed("overlay", start)[0]
        shown = Shown(image, huds, stats, done.results, Controls(done.query, look), step.frames, done.placements)
        for output in self.outputs:
            output.write(shown)
        first = next(f for f in step.frames if f is not None)
        self.meters.presented(drawn_at, None if look.frozen else first.captured_at)
        self.last_huds = huds
        self.last_classes = explained_classes(done.results[0])
        return shown

    def _steer(self, shown: Shown) -> bool:
        """Read every output's input, then act on `shown`, the frame on screen meanwhile; True to go on."""
        actions: list[str] = []
        for output in self.outputs:
            self.controls, more = output.steer(self.controls, self.provides)  # it checks a method against provides
            actions += more
        if QUIT in actions:
            return False
        if actions:
            for output in self.outputs:
                output.act(tuple(actions), shown)
        return True

    def run(self, max_frames: int | None = None) -> RunSummary:
        end_reason = "no frames"
        with self._scheduler() as scheduler:
            while not self.stop_requested:
                last = max_frames is not None and self.meters.displayed + 1 >= max_frames
                step = scheduler.next(self.controls, last)
                if step is None:
                    break
                if not self._steer(self._present(step)):
                    end_reason = "quit"
                    break
                if max_frames is not None and self.meters.displayed >= max_frames:
                    end_reason = f"reached --max-frames {max_frames}"
                    break
        totals = self.sources.totals()
        return RunSummary(
            displayed=self.meters.displayed,
            end_reason=self.sources.end_reason or ("stopped" if self.stop_requested else end_reason),
            stats=self.stats(),
            last_huds=self.last_huds,
            last_classes=self.last_classes,
            **totals,
        )
