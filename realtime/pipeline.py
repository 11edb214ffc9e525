"""The live loop: capture -> engine -> CAM method -> smoothing -> overlay -> sinks.

Inference of frame t runs on a worker thread (onnxruntime releases the GIL)
while the main thread draws and shows frame t-1, so the display rate is set
by the model alone. Controls are a frozen value replaced on every key press.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from realtime import cam, overlay
from realtime.capture import Frame, LatestFrameReader
from realtime.engine import CamResult, Engine
from realtime.frames import Region, fit, model_region
from realtime.meter import DurationMeter, RateMeter
from realtime.sinks import SinkError

QUIT, SNAPSHOT, RECORD = "quit", "snapshot", "record"


@dataclass(frozen=True)
class Controls:
    """What the presenter steers: the method, the class to explain, the blend."""

    method: str = "gradcam"
    class_id: int | None = None  # a fixed class; None: explain the ranked class below
    rank: int = 0  # 0: top-1, k: the class ranked k+1-th
    top_k: int = 1  # maps shown side by side
    alpha: float = overlay.DEFAULT_ALPHA
    smooth: float = 0.0  # EMA weight of the previous map, 0..1
    frozen: bool = False


def method_cycle(has_gradients: bool) -> list[str]:
    return [name for name, m in cam.METHODS.items() if has_gradients or not m.needs_gradients]


def apply_key(controls: Controls, key: int, has_gradients: bool) -> tuple[Controls, str | None]:
    """A key press -> new controls and an action (quit, snapshot, record) or None."""
    if key < 0:
        return controls, None
    char = chr(key & 0xFF)
    if char in ("q", "\x1b"):
        return controls, QUIT
    if char == " ":
        return replace(controls, frozen=not controls.frozen), None
    if char == "m":
        cycle = method_cycle(has_gradients)
        current = cycle.index(controls.method) if controls.method in cycle else -1
        return replace(controls, method=cycle[(current + 1) % len(cycle)]), None
    if char in "12345":
        return replace(controls, class_id=None, rank=int(char) - 1), None
    if char == "0":
        return replace(controls, class_id=None, rank=0), None
    if char == "s":
        return controls, SNAPSHOT
    if char == "r":
        return controls, RECORD
    return controls, None


def targets_for(controls: Controls) -> list[int]:
    """The graph's `targets` row: the explained class first, then the ranked ones for top-k tiles."""
    if controls.class_id is not None:
        return [controls.class_id] + [-1] * (controls.top_k - 1)
    return [-1] * max(controls.top_k, controls.rank + 1)


def explained_columns(controls: Controls) -> list[int]:
    if controls.class_id is not None:
        return [0] if controls.top_k == 1 else list(range(controls.top_k))
    return [controls.rank] if controls.top_k == 1 else list(range(controls.top_k))


def maps_for(result: CamResult, controls: Controls, index: int = 0) -> np.ndarray:
    """Normalised maps [K',h,w] for the explained columns, by the chosen method."""
    columns = explained_columns(controls)
    if controls.method == "gradcam":
        raw = result.cam[index, columns]  # the graph already computed Grad-CAM
    else:
        if result.activations is None:
            raise cam.MethodNeedsGradientsError(f"{controls.method} needs activations")
        grads = None if result.gradients is None else result.gradients[index, columns]
        raw = cam.compute_maps(controls.method, result.activations[index], grads, result.weights[index, columns])
    return cam.normalise(raw)


class Sink(Protocol):
    def write(self, frame: np.ndarray) -> None: ...


@dataclass(frozen=True)
class Stats:
    """The rates and times the HUD shows, as of the last displayed frame."""

    displayed: int = 0
    display_fps: float = 0.0
    model_ms: float = 0.0
    latency_ms: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)  # wall time, shared cores included
    stage_cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU time of the thread doing the stage
    model_fps: float | None = None  # set when display and model run at different rates
    map_age: int | None = None  # frames since the shown map's model frame


@dataclass(frozen=True)
class RunSummary:
    displayed: int
    captured: int
    dropped: int
    bad_frames: int
    reconnects: int
    end_reason: str
    stats: Stats
    last_hud: overlay.Hud | None
    last_classes: tuple[int, ...]
    snapshots: tuple[Path, ...]


@dataclass(frozen=True)
class FrameReport:
    """What the loop hands to observers (the browser view) after drawing a frame."""

    image: np.ndarray  # what was drawn
    hud: overlay.Hud
    stats: Stats
    result: CamResult
    controls: Controls
    source: np.ndarray  # the camera frame it was drawn on


@dataclass(frozen=True)
class Inference:
    """One frame and what every engine said about it."""

    frame: Frame
    results: tuple[CamResult, ...]
    resize_s: float
    controls: Controls
    resize_cpu_s: float = 0.0


def hud_for(
    result: CamResult, controls: Controls, stats: Stats, notes: Sequence[str] = (), model_name: str | None = None
) -> overlay.Hud:
    """What the HUD says about image 0 of `result` under `controls`."""
    explained = int(result.classes[0, explained_columns(controls)[0]])
    label = result.labels[explained] if explained < len(result.labels) else str(explained)
    return overlay.Hud(
        label=f"{model_name}: {label}" if model_name else label,
        probability=float(result.probabilities[0, explained]),
        method=controls.method,
        top=[(name, p) for _, name, p in result.top(0, 5)],
        display_fps=stats.display_fps,
        model_ms=stats.model_ms,
        latency_ms=stats.latency_ms,
        model_fps=stats.model_fps,
        map_age=stats.map_age,
        notes=tuple(notes) + (("FROZEN",) if controls.frozen else ()),
    )


def render(
    frame: np.ndarray,
    result: CamResult,
    maps: np.ndarray,
    controls: Controls,
    stats: Stats,
    region: Region | None = None,
    notes: Sequence[str] = (),
) -> tuple[np.ndarray, overlay.Hud]:
    """Overlay and HUD for one frame (top-k maps side by side); `region` is where the model looked."""
    hud = hud_for(result, controls, stats, notes)
    panels = [overlay.blend(frame, maps[i], controls.alpha, region) for i in range(len(explained_columns(controls)))]
    if len(panels) == 1:
        return overlay.draw_hud(panels[0], hud), hud
    captions = [""] + [result.labels[int(result.classes[0, c])] for c in explained_columns(controls)[1:]]
    return overlay.tile([overlay.draw_hud(panels[0], hud), *panels[1:]], captions), hud


def render_comparison(
    frame: np.ndarray,
    results: Sequence[CamResult],
    maps: Sequence[np.ndarray],
    names: Sequence[str],
    controls: Controls,
    stats: Stats,
    region: Region | None = None,
    notes: Sequence[str] = (),
) -> tuple[np.ndarray, overlay.Hud]:
    """One panel per model, side by side, each with its own HUD (e.g. the biased and the fair model)."""
    single = replace(controls, top_k=1)
    panels, huds = [], []
    for result, model_maps, name in zip(results, maps, names, strict=True):
        hud = hud_for(result, single, stats, notes, name)
        panels.append(overlay.draw_hud(overlay.blend(frame, model_maps[0], controls.alpha, region), hud))
        huds.append(hud)
    return overlay.tile(panels), huds[0]


class LiveLoop:
    """Runs reader -> engines -> render -> sinks until the source ends, a key quits or max_frames.

    With several engines (say a biased and a fair model) every frame goes through each
    and the panels are shown side by side.
    """

    def __init__(
        self,
        engines: Engine | Sequence[Engine],
        reader: LatestFrameReader,
        controls: Controls,
        fit_mode: str = "squash",
        show: Callable[[np.ndarray], int] | None = None,
        sinks: Sequence[Sink] = (),
        snapshot: Callable[[np.ndarray], Path] | None = None,
        toggle_record: Callable[[], str] | None = None,
        on_frame: Callable[[FrameReport], None] | None = None,
        poll_controls: Callable[[Controls], Controls] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    ) -> None:
        self.engines = [engines] if isinstance(engines, Engine) else list(engines)
        if not self.engines:
            raise ValueError("LiveLoop needs at least one engine")
        self.reader, self.controls, self.fit_mode = reader, controls, fit_mode
        self.show, self.sinks, self.snapshot, self.toggle_record = show, sinks, snapshot, toggle_record
        self.on_frame, self.poll_controls = on_frame, poll_controls
        self.clock, self.log = clock, log
        self.display_rate = RateMeter(30, clock)
        self.model_time = DurationMeter(30)
        self.latency = DurationMeter(30)
        self.stages = {name: DurationMeter(60) for name in ("resize", "inference", "cam", "overlay", "sink", "flow")}
        self.stage_cpu = {name: DurationMeter(60) for name in ("resize", "cam", "overlay", "flow")}
        self.last_hud: overlay.Hud | None = None
        self.last_classes: tuple[int, ...] = ()
        self.snapshots: list[Path] = []
        self.notes: list[str] = []
        self.stop_requested = False
        self.has_gradients = all(e.has_gradients for e in self.engines)

    def _infer(self, frame: Frame, controls: Controls) -> Inference:
        inputs: dict[tuple[int, int], np.ndarray] = {}
        method = cam.METHODS.get(controls.method)
        need = method is not None and method.needs_gradients
        results = []
        resize_s = resize_cpu = 0.0
        for engine in self.engines:
            size = (engine.info.input_height, engine.info.input_width)
            if size not in inputs:
                t0, c0 = self.clock(), time.thread_time()
                inputs[size] = fit(frame.image, size, self.fit_mode)
                resize_s += self.clock() - t0
                resize_cpu += time.thread_time() - c0
            results.append(engine.run(inputs[size][None], [targets_for(controls)], need_gradients=need))
        return Inference(frame, tuple(results), resize_s, controls, resize_cpu)

    def stats(self) -> Stats:
        return Stats(
            displayed=self.display_rate.count,
            display_fps=self.display_rate.rate,
            model_ms=self.model_time.ms,
            latency_ms=self.latency.ms,
            stage_ms={name: meter.ms for name, meter in self.stages.items()},
            stage_cpu_ms={name: meter.ms for name, meter in self.stage_cpu.items()},
        )

    def _view(self, done: Inference) -> Controls:
        """Controls to draw `done` with: what it was inferred for (method, class), how it looks now (blend)."""
        now = self.controls
        return replace(done.controls, alpha=now.alpha, smooth=now.smooth, frozen=now.frozen)

    def _maps(self, done: Inference, view: Controls) -> list[np.ndarray]:
        try:
            return [maps_for(result, view) for result in done.results]
        except cam.MethodNeedsGradientsError as exc:  # a pooled model: only Grad-CAM is possible
            self.log(str(exc))
            self.controls = replace(self.controls, method="gradcam")
            return [maps_for(result, replace(view, method="gradcam")) for result in done.results]

    def _region(self, frame_shape: tuple[int, ...]) -> Region:
        """The part of the frame the (first) model sees."""
        info = self.engines[0].info
        return model_region(frame_shape, (info.input_height, info.input_width), self.fit_mode)

    def _draw(
        self,
        image: np.ndarray,
        results: Sequence[CamResult],
        maps: Sequence[np.ndarray],
        view: Controls,
        region: Region | None,
    ) -> tuple[np.ndarray, overlay.Hud]:
        """One panel, or one per engine side by side; `region` is where the maps go (None: the whole frame)."""
        if len(self.engines) == 1:
            return render(image, results[0], maps[0], view, self.stats(), region, self.notes)
        names = [e.info.model_name for e in self.engines]
        return render_comparison(image, results, maps, names, view, self.stats(), region, self.notes)

    def _present(
        self, image: np.ndarray, hud: overlay.Hud, view: Controls, result: CamResult, frame: Frame
    ) -> str | None:
        """Sinks, window, meters, observers and keys for one drawn frame; returns the key's action."""
        t0 = self.clock()
        for sink in self.sinks:
            sink.write(image)
        key = self.show(image) if self.show is not None else -1
        t1 = self.clock()
        self.display_rate.tick(t1)
        if not view.frozen:
            self.latency.add_seconds(t1 - frame.captured_at)
        self.stages["sink"].add_seconds(t1 - t0)
        self.last_hud, self.last_classes = hud, tuple(int(c) for c in result.classes[0])
        if self.on_frame is not None:
            self.on_frame(FrameReport(image, hud, self.stats(), result, view, frame.image))
        if self.poll_controls is not None:
            self.controls = self.poll_controls(self.controls)
        self.controls, action = apply_key(self.controls, key, self.has_gradients)
        try:  # a full disk or a bad folder is reported; the show goes on
            if action == SNAPSHOT and self.snapshot is not None:
                self.snapshots.append(self.snapshot(image))
                self.log(f"snapshot: {self.snapshots[-1]}")
            if action == RECORD and self.toggle_record is not None:
                self.log(self.toggle_record())
        except (SinkError, OSError) as exc:
            self.log(f"{action} failed: {exc}")
        return action

    def _timed(self, stage: str, start: float, cpu_start: float) -> tuple[float, float]:
        """Book wall and thread CPU time since (start, cpu_start) to `stage`; returns the new marks."""
        now, cpu = self.clock(), time.thread_time()
        self.stages[stage].add_seconds(now - start)
        self.stage_cpu[stage].add_seconds(cpu - cpu_start)
        return now, cpu

    def _summary(self, end_reason: str) -> RunSummary:
        return RunSummary(
            displayed=self.display_rate.count,
            captured=self.reader.captured,
            dropped=self.reader.dropped,
            bad_frames=self.reader.bad_frames,
            reconnects=self.reader.reconnects,
            end_reason=self.reader.end_reason or ("stopped" if self.stop_requested else end_reason),
            stats=self.stats(),
            last_hud=self.last_hud,
            last_classes=self.last_classes,
            snapshots=tuple(self.snapshots),
        )

    def _book_inference(self, done: Inference) -> None:
        model_s = sum(r.seconds for r in done.results)
        self.model_time.add_seconds(model_s)
        self.stages["inference"].add_seconds(model_s)
        self.stages["resize"].add_seconds(done.resize_s)
        self.stage_cpu["resize"].add_seconds(done.resize_cpu_s)

    def run(self, max_frames: int | None = None) -> RunSummary:
        previous_maps: list[np.ndarray | None] = [None] * len(self.engines)
        end_reason = "no frames"
        with ThreadPoolExecutor(1, thread_name_prefix="inference") as pool:
            frame = self.reader.get()
            pending = pool.submit(self._infer, frame, self.controls) if frame is not None else None
            while pending is not None and not self.stop_requested:
                done = pending.result()
                self._book_inference(done)
                if max_frames is not None and self.display_rate.count + 1 >= max_frames:
                    pending, end_reason = None, f"reached --max-frames {max_frames}"
                else:  # start frame t+1 before drawing frame t; frozen: re-explain the same frame
                    nxt = done.frame if self.controls.frozen else self.reader.get()
                    pending = pool.submit(self._infer, nxt, self.controls) if nxt is not None else None
                t, c = self.clock(), time.thread_time()
                view = self._view(done)
                maps = self._maps(done, view)
                maps = [cam.smooth_maps(p, m, view.smooth) for p, m in zip(previous_maps, maps, strict=True)]
                previous_maps = list(maps)
                t, c = self._timed("cam", t, c)
                region = self._region(done.frame.image.shape)
                image, hud = self._draw(done.frame.image, done.results, maps, view, region)
                self._timed("overlay", t, c)
                if self._present(image, hud, view, done.results[0], done.frame) == QUIT:
                    end_reason = "quit"
                    break
            if pending is not None:
                pending.cancel()
        return self._summary(end_reason)
