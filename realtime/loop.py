"""The live loop: sources -> scheduler -> panels -> outputs, wired and nothing more.

Threads:
- capture, one per source (capture.LatestFrameReader): reads frames, keeps only the newest;
- inference, owned by the scheduler (schedule.ModelRate or schedule.CameraRate): every model
  once on the newest frame of every source, as one batch;
- main (this loop): asks the scheduler for the next step, draws the mosaic, hands it to every
  output, reads the window's keys and the browser's controls, and hands the actions they ask
  for back to the outputs together with the frame that was on screen when they came.
Recordings encode on their own thread (outputs.VideoRecorder), the browser view serves from its
own (serve.app). What is measured lives in meters.Meters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from realtime import cam
from realtime.controls import QUIT, Controls
from realtime.engine import Engine
from realtime.frames import model_region
from realtime.meters import Meters
from realtime.outputs import Output, Shown, stderr
from realtime.overlay import Hud
from realtime.panels import Model, Stats, mosaic, panel_names
from realtime.schedule import CameraRate, ModelRate, Scheduler, Step, view_of
from realtime.sourceset import SourceSet


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
        self.engines = [engines] if isinstance(engines, Engine) else list(engines)
        if not self.engines:
            raise ValueError("the loop needs at least one model")
        self.provides = frozenset.intersection(*(e.provides for e in self.engines))
        lacking = cam.method(controls.method).lacking(self.provides)
        if lacking:  # refused here, where the starting method is chosen; steering outputs check theirs
            usable = ", ".join(cam.usable_methods(self.provides))
            raise cam.MethodNeedsGradientsError(f"method {controls.method} needs {lacking}; start with one of {usable}")
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

    def _models(self, step: Step, shape: tuple[int, ...], stats: Stats) -> list[Model]:
        models = []
        for m, engine in enumerate(self.engines):
            size = (engine.info.input_height, engine.info.input_width)
            region = model_region(shape, size, self.fit_mode) if step.on_model_region else None
            models.append(Model(self.names[m], step.done.class_ids[m], region, stats.engine_ms[m] or None))
        return models

    def _present(self, step: Step) -> Shown:
        """Draw the step and hand it to every output; returns what they were shown."""
        start = self.meters.stamp()
        view = view_of(step.done, self.controls)
        images = [None if f is None else f.image for f in step.frames]
        reference = next(im for im in images if im is not None)
        stats = self.stats()
        models = self._models(step, reference.shape, stats)
        names = [s.name for s in self.sources.sources]
        image, huds = mosaic(
            images, step.done.indices, step.done.results, step.maps, models, view, stats,
            lost=self.sources.lost(), source_names=names,
        )  # fmt: skip
        drawn_at = self.meters.timed("overlay", start)[0]
        shown = Shown(image, huds, stats, step.done.results, view, step.frames)
        for output in self.outputs:
            output.write(shown)
        first = next(f for f in step.frames if f is not None)
        self.meters.presented(drawn_at, None if view.frozen else first.captured_at)
        self.last_huds = huds
        self.last_classes = tuple(int(c) for c in step.done.results[0].classes[0])
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
