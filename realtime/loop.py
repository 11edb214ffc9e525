"""The live loop: sources -> engines -> methods -> panels -> outputs.

Threads:
- capture, one per source (capture.LatestFrameReader): reads frames, keeps only the newest;
- inference, a one-worker pool: fits the newest frame of every source to each model and runs
  each model once on them all, as one batch (onnxruntime releases the GIL meanwhile);
- main (this loop): turns results into maps, draws the mosaic, hands it to every output, then
  reads the window's keys and the browser's controls.
Recordings encode on their own thread (outputs.VideoRecorder), the browser view serves from its
own (serve.app). At model rate one frame is shown per result, and frame t+1 is inferred while
frame t is drawn. At camera rate every camera frame is shown, with the newest maps carried to
it by optical flow (flow.MapCarrier). Both rates share this skeleton; only `_next` differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from realtime import cam
from realtime.capture import Frame
from realtime.controls import QUIT, Controls
from realtime.engine import Engine
from realtime.flow import FLOW_WIDTH, MapCarrier, embed
from realtime.frames import model_region
from realtime.inference import Inference, infer
from realtime.meter import DurationMeter, RateMeter
from realtime.outputs import Output, Shown, stderr
from realtime.overlay import Hud
from realtime.pacing import Pacer
from realtime.panels import Model, Stats, mosaic, panel_maps
from realtime.sourceset import SourceSet

Maps = list[list[np.ndarray | None]]  # [model][source]


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


@dataclass(frozen=True)
class Step:
    """What the main thread draws next."""

    done: Inference
    frames: tuple[Frame | None, ...]  # the camera frames to draw on
    maps: Maps
    on_model_region: bool  # maps cover the part of the frame the model saw (else the whole frame)


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
        self.sources, self.controls, self.outputs = sources, controls, list(outputs)
        self.display, self.fit_mode, self.clock, self.log = display, fit_mode, clock, log
        self.provides = frozenset.intersection(*(e.provides for e in self.engines))
        self.names = [e.info.model_name for e in self.engines] if len(self.engines) > 1 else [None]
        self.display_rate, self.model_rate = RateMeter(30, clock), RateMeter(30, clock)
        self.model_time, self.latency = DurationMeter(30), DurationMeter(30)
        self.engine_time = [DurationMeter(30) for _ in self.engines]
        self.stages = {n: DurationMeter(60) for n in ("resize", "inference", "cam", "overlay", "sink", "flow")}
        self.stage_cpu = {n: DurationMeter(60) for n in ("resize", "cam", "overlay", "flow")}
        self.carriers = [MapCarrier(warp_maps=warp_maps) for _ in sources.sources]
        self.pacer = Pacer(0.0 if sources.sources[0].live else sources.sources[0].fps or 0.0, clock)
        self.stop_requested = False
        self.last_huds: tuple[Hud, ...] = ()
        self.last_classes: tuple[int, ...] = ()
        self.actions: tuple[str, ...] = ()
        self._previous: Maps = [[None] * len(sources.sources) for _ in self.engines]
        self._pending: Future[Inference] | None = None
        self._latest: Inference | None = None
        self._map_age: int | None = None

    # -- shared by both rates

    def stats(self) -> Stats:
        camera = self.display == "camera"
        return Stats(
            displayed=self.display_rate.count,
            display_fps=self.display_rate.rate,
            model_ms=self.model_time.ms,
            latency_ms=self.latency.ms,
            engine_ms=tuple(m.ms for m in self.engine_time),
            stage_ms={name: meter.ms for name, meter in self.stages.items()},
            stage_cpu_ms={name: meter.ms for name, meter in self.stage_cpu.items()},
            model_fps=self.model_rate.rate if camera else None,
            map_age=self._map_age if camera else None,
        )

    def _submit(self, pool: ThreadPoolExecutor, frames: Sequence[Frame | None]) -> None:
        self._pending = pool.submit(infer, self.engines, frames, self.controls, self.fit_mode)

    def _take(self) -> Inference:
        """Wait for the pending inference and book its times."""
        assert self._pending is not None
        done, self._pending = self._pending.result(), None
        for meter, result in zip(self.engine_time, done.results, strict=True):
            meter.add_seconds(result.seconds)
        model_s = sum(r.seconds for r in done.results)
        self.model_time.add_seconds(model_s)
        self.model_rate.tick()
        self.stages["inference"].add_seconds(model_s)
        self.stages["resize"].add_seconds(done.resize_s)
        self.stage_cpu["resize"].add_seconds(done.resize_cpu_s)
        return done

    def _view(self, done: Inference) -> Controls:
        """Draw `done` as it was inferred (method, class) and as it should look now (blend, style)."""
        now = self.controls
        return replace(done.controls, alpha=now.alpha, smooth=now.smooth, frozen=now.frozen, style=now.style)

    def _maps(self, done: Inference, view: Controls) -> Maps:
        try:
            return [
                [None if i is None else panel_maps(result, i, view, class_id) for i in done.indices]
                for result, class_id in zip(done.results, done.class_ids, strict=True)
            ]
        except cam.MethodNeedsGradientsError as exc:  # a pooled model: only Grad-CAM is possible
            self.log(str(exc))
            self.controls = replace(self.controls, method="gradcam")
            return self._maps(done, replace(view, method="gradcam"))

    def _timed(self, stage: str, start: tuple[float, float]) -> tuple[float, float]:
        now = (self.clock(), time.thread_time())
        self.stages[stage].add_seconds(now[0] - start[0])
        self.stage_cpu[stage].add_seconds(now[1] - start[1])
        return now

    # -- the two rates

    def _next_at_model_rate(self, pool: ThreadPoolExecutor, last: bool) -> Step | None:
        if self._pending is None:
            return None
        done = self._take()
        if not last:  # start frame t+1 before drawing frame t; frozen: re-explain the same frames
            nxt = done.frames if self.controls.frozen else self.sources.get()
            if nxt is not None:
                self._submit(pool, nxt)
        start = (self.clock(), time.thread_time())
        view = self._view(done)
        fresh = self._maps(done, view)
        maps: Maps = [
            [None if m is None else cam.smooth_maps(p, m, view.smooth) for p, m in zip(prev, row, strict=True)]
            for prev, row in zip(self._previous, fresh, strict=True)
        ]
        self._previous = maps
        self._timed("cam", start)
        return Step(done, done.frames, maps, on_model_region=True)

    def _adopt(self, done: Inference) -> None:
        """New maps at camera rate: placed on the whole frame, carried from now on."""
        self._latest = done
        maps = self._maps(done, self._view(done))
        for s, frame in enumerate(done.frames):
            if frame is None:
                continue
            image = frame.image
            shape = (round(image.shape[0] * FLOW_WIDTH / image.shape[1]), FLOW_WIDTH)
            full = []
            for engine, per_source in zip(self.engines, maps, strict=True):
                info = engine.info
                region = model_region(image.shape, (info.input_height, info.input_width), self.fit_mode)
                box = (region.x, region.y, region.width, region.height)
                stack = per_source[s]
                assert stack is not None
                full.append(np.stack([embed(m, box, image.shape, shape) for m in stack]))
            self.carriers[s].update(image, frame.index, full, self.controls.smooth)

    def _next_at_camera_rate(self, pool: ThreadPoolExecutor, last: bool) -> Step | None:
        frames = self.sources.get()
        if frames is None:
            return None
        if frames[0] is not None:
            self.pacer.wait(frames[0].index)  # a file plays at its own rate, as a camera would deliver it
        if self._pending is not None and self._pending.done():
            self._adopt(self._take())
        if self._pending is None:  # the model is free: give it the newest frames (frozen: the same again)
            self._submit(pool, self._latest.frames if self.controls.frozen and self._latest else frames)
        if self._latest is None:  # the very first maps: wait for them once
            self._adopt(self._take())
        assert self._latest is not None
        shown = self._latest.frames if self.controls.frozen else frames
        start = (self.clock(), time.thread_time())
        maps: Maps = [[] for _ in self.engines]
        for s, frame in enumerate(shown):
            carried = None
            if frame is not None and self.carriers[s].index >= 0:
                carried = self.carriers[s].carry(frame.image, frame.index)
            for m in range(len(self.engines)):
                maps[m].append(None if carried is None else carried[m])
        if shown[0] is not None:
            self._map_age = shown[0].index - self.carriers[0].index
        self._timed("flow", start)
        done = replace(self._latest, frames=shown)
        return Step(done, shown, maps, on_model_region=False)

    # -- presenting

    def _models(self, step: Step, shape: tuple[int, ...]) -> list[Model]:
        models = []
        for m, engine in enumerate(self.engines):
            size = (engine.info.input_height, engine.info.input_width)
            region = model_region(shape, size, self.fit_mode) if step.on_model_region else None
            models.append(Model(self.names[m], step.done.class_ids[m], region, self.engine_time[m].ms or None))
        return models

    def _present(self, step: Step) -> bool:
        """Draw, hand to every output, read the presenter's input; True to go on."""
        start = (self.clock(), time.thread_time())
        view = self._view(step.done)
        images = [None if f is None else f.image for f in step.frames]
        reference = next(im for im in images if im is not None)
        models = self._models(step, reference.shape)
        names = [s.name for s in self.sources.sources]
        stats = self.stats()
        image, huds = mosaic(
            images, step.done.indices, step.done.results, step.maps, models, view, stats,
            lost=self.sources.lost(), source_names=names,
        )  # fmt: skip
        t = self._timed("overlay", start)
        shown = Shown(image, huds, stats, step.done.results, view, step.frames, self.actions)
        for output in self.outputs:
            output.write(shown)
        now = self.clock()
        self.display_rate.tick(now)
        self.stages["sink"].add_seconds(now - t[0])
        first = next(f for f in step.frames if f is not None)
        if not view.frozen:
            self.latency.add_seconds(now - first.captured_at)
        self.last_huds = huds
        self.last_classes = tuple(int(c) for c in step.done.results[0].classes[0])
        actions: list[str] = []
        for output in self.outputs:
            self.controls, more = output.steer(self.controls, self.provides)
            actions += more
        self.actions = tuple(a for a in actions if a != QUIT)
        return QUIT not in actions

    def run(self, max_frames: int | None = None) -> RunSummary:
        end_reason = "no frames"
        step_next = self._next_at_camera_rate if self.display == "camera" else self._next_at_model_rate
        with ThreadPoolExecutor(1, thread_name_prefix="inference") as pool:
            if self.display != "camera":
                first = self.sources.get()
                if first is not None:
                    self._submit(pool, first)
            while not self.stop_requested:
                last = max_frames is not None and self.display_rate.count + 1 >= max_frames
                step = step_next(pool, last)
                if step is None:
                    break
                if not self._present(step):
                    end_reason = "quit"
                    break
                if max_frames is not None and self.display_rate.count >= max_frames:
                    end_reason = f"reached --max-frames {max_frames}"
                    break
            if self._pending is not None:
                self._pending.cancel()
        totals = self.sources.totals()
        return RunSummary(
            displayed=self.display_rate.count,
            end_reason=self.sources.end_reason or ("stopped" if self.stop_requested else end_reason),
            stats=self.stats(),
            last_huds=self.last_huds,
            last_classes=self.last_classes,
            **totals,
        )
