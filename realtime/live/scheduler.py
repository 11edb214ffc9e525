"""When to infer and what to draw next: one scheduler per display rate, each owning its state.

Both own the one-worker inference thread and the one model call in flight (onnxruntime
releases the GIL meanwhile). At model rate one frame is shown per result, and frame t+1 is
inferred while frame t is drawn. At camera rate every camera frame is shown, with the newest
maps carried to it by optical flow (maps.flow.MapCarrier). The loop only asks `next`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from realtime.engines.protocol import Engine
from realtime.live.inference import Inference, infer
from realtime.live.meters import Meters
from realtime.maps import methods
from realtime.maps.explain import maps_for, on_frame
from realtime.maps.flow import FLOW_WIDTH, MapCarrier, embed
from realtime.outputs.controls import Controls
from realtime.sources.fitting import Region
from realtime.sources.frame import Frame, mirrored
from realtime.sources.group import SourceSet
from realtime.sources.pacing import Pacer

Maps = list[list[np.ndarray | None]]  # [model][source]
Regions = tuple[tuple[Region | None, ...], ...]  # [model][source]: where the maps go (None: the whole frame)


@dataclass(frozen=True)
class Step:
    """What the main thread draws next."""

    done: Inference
    frames: tuple[Frame | None, ...]  # the camera frames to draw on
    maps: Maps
    regions: Regions  # where on each frame each model's maps go


def maps_of(done: Inference) -> tuple[Maps, Regions]:
    """Every model's maps for every source of `done`, under the query it was inferred with (the method was
    checked against the graphs when chosen), placed as each frame was fitted to the model."""
    maps: Maps = []
    regions = []
    for result, class_id, placements in zip(done.results, done.class_ids, done.placements, strict=True):
        row, where = [], []
        for i, placement in zip(done.indices, placements, strict=True):
            placed_maps, region = (None, None) if i is None else on_frame(maps_for(result, i, done.query, class_id),
                                                                          placement)  # fmt: skip
            row.append(placed_maps)
            where.append(region)
        maps.append(row)
        regions.append(tuple(where))
    return maps, tuple(regions)


class Scheduler:
    """The inference thread and the call in flight; `next` gives the step to draw, None at the end."""

    def __init__(self, engines: Sequence[Engine], sources: SourceSet, meters: Meters, fit_mode: str) -> None:
        self.engines, self.sources, self.meters, self.fit_mode = list(engines), sources, meters, fit_mode
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._pending: Future[Inference] | None = None

    def next(self, controls: Controls, last: bool) -> Step | None:
        """The next step under `controls`; `last`: no step follows this one, so infer nothing more."""
        raise NotImplementedError

    def _newest(self, controls: Controls) -> tuple[Frame | None, ...] | None:
        """The sources' newest frames, mirrored when the controls say so: the model and the drawing then
        see the same picture, so the map stays on the object."""
        frames = self.sources.get()
        return None if frames is None else mirrored(frames, controls.look.mirror)

    def _submit(self, frames: Sequence[Frame | None], controls: Controls) -> None:
        self._pending = self._pool.submit(infer, self.engines, frames, controls.query, self.fit_mode)

    def _take(self) -> Inference:
        """Wait for the call in flight and book its times."""
        assert self._pending is not None
        done, self._pending = self._pending.result(), None
        self.meters.inferred(done)
        return done

    def close(self) -> None:
        """Drop a call not yet started and wait for the one running."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ModelRate(Scheduler):
    """One step per model result; maps smoothed against the previous step's."""

    def __init__(self, engines: Sequence[Engine], sources: SourceSet, meters: Meters, fit_mode: str) -> None:
        super().__init__(engines, sources, meters, fit_mode)
        self._started = False
        self._previous: Maps = [[None] * len(sources.sources) for _ in self.engines]

    def next(self, controls: Controls, last: bool) -> Step | None:
        if not self._started:
            self._started = True
            first = self._newest(controls)
            if first is not None:
                self._submit(first, controls)
        if self._pending is None:
            return None
        done = self._take()
        if not last:  # start frame t+1 before drawing frame t; frozen: re-explain the same frames
            nxt = done.frames if controls.look.frozen else self._newest(controls)
            if nxt is not None:
                self._submit(nxt, controls)
        start = self.meters.stamp()
        smooth = controls.look.smooth
        fresh, regions = maps_of(done)
        maps: Maps = [
            [None if m is None else methods.smooth_maps(p, m, smooth) for p, m in zip(prev, row, strict=True)]
            for prev, row in zip(self._previous, fresh, strict=True)
        ]
        self._previous = maps
        self.meters.timed("cam", start)
        return Step(done, done.frames, maps, regions)


class CameraRate(Scheduler):
    """One step per camera frame; the model takes the newest frames whenever it is free."""

    def __init__(
        self, engines: Sequence[Engine], sources: SourceSet, meters: Meters, fit_mode: str, warp_maps: bool = True
    ) -> None:
        super().__init__(engines, sources, meters, fit_mode)
        self._carriers = [MapCarrier(warp_maps=warp_maps) for _ in sources.sources]
        first = sources.sources[0]
        self._pacer = Pacer(0.0 if first.live else first.fps or 0.0, meters.clock)
        self._latest: Inference | None = None

    def _adopt(self, done: Inference, controls: Controls) -> None:
        """New maps: placed on the whole frame, carried from now on."""
        self._latest = done
        maps, regions = maps_of(done)
        for s, frame in enumerate(done.frames):
            if frame is None:
                continue
            image = frame.image
            shape = (round(image.shape[0] * FLOW_WIDTH / image.shape[1]), FLOW_WIDTH)
            full = []
            for per_source, where in zip(maps, regions, strict=True):
                region, stack = where[s], per_source[s]
                assert stack is not None
                region = region or Region(0, 0, image.shape[1], image.shape[0])
                box = (region.x, region.y, region.width, region.height)
                full.append(np.stack([embed(m, box, image.shape, shape) for m in stack]))
            self._carriers[s].update(image, frame.index, full, controls.look.smooth)

    def next(self, controls: Controls, last: bool) -> Step | None:
        frames = self._newest(controls)
        if frames is None:
            return None
        if frames[0] is not None:
            self._pacer.wait(frames[0].index)  # a file plays at its own rate, as a camera would deliver it
        if self._pending is not None and self._pending.done():
            self._adopt(self._take(), controls)
        if self._pending is None:  # the model is free: give it the newest frames (frozen: the same again)
            self._submit(self._latest.frames if controls.look.frozen and self._latest else frames, controls)
        if self._latest is None:  # the very first maps: wait for them once
            self._adopt(self._take(), controls)
        assert self._latest is not None
        shown = self._latest.frames if controls.look.frozen else frames
        start = self.meters.stamp()
        maps: Maps = [[] for _ in self.engines]
        for s, frame in enumerate(shown):
            carried = None
            if frame is not None and self._carriers[s].index >= 0:
                carried = self._carriers[s].carry(frame.image, frame.index)
            for m in range(len(self.engines)):
                maps[m].append(None if carried is None else carried[m])
        if shown[0] is not None:
            self.meters.aged(shown[0].index - self._carriers[0].index)
        self.meters.timed("flow", start)
        whole = tuple((None,) * len(shown) for _ in self.engines)  # carried maps cover the whole frame
        return Step(replace(self._latest, frames=shown), shown, maps, whole)
