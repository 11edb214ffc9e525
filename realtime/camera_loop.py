"""Camera-rate display: show every camera frame, carry the newest map to it by optical flow.

The model runs on a worker thread whenever it is free, always on the newest
frame. Every camera frame is drawn at once with the latest map, warped from
the model's frame to this one (see flow.MapCarrier). `--display model` keeps
the model-paced LiveLoop instead.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from realtime.flow import FLOW_WIDTH, MapCarrier, embed
from realtime.meter import RateMeter
from realtime.pipeline import QUIT, Inference, LiveLoop, RunSummary, Stats

DISPLAY_MODES = {
    "auto": "camera when the model is slower than the source, else model",
    "camera": "every camera frame, the newest map carried to it by optical flow",
    "model": "one displayed frame per model result (no flow)",
}


def choose_display(mode: str, model_ms: float, source_fps: float) -> str:
    """Resolve `auto`: camera-rate display pays off only when the model is the slower of the two."""
    if mode not in DISPLAY_MODES:
        raise ValueError(f"--display {mode!r}: choose one of {', '.join(DISPLAY_MODES)}")
    if mode != "auto":
        return mode
    return "camera" if source_fps > 0 and model_ms > 1000.0 / source_fps else "model"


class CameraRateLoop(LiveLoop):
    """A LiveLoop that displays at the camera's rate, not the model's."""

    def __init__(self, *args: Any, warp_maps: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.carrier = MapCarrier(warp_maps=warp_maps)
        self.model_rate = RateMeter(30, self.clock)
        self.latest: Inference | None = None
        self.map_age: int | None = None

    def _adopt(self, done: Inference) -> None:
        """A new model result: its maps, placed on the whole frame, become the ones carried."""
        self.latest = done
        self.model_rate.tick()
        self._book_inference(done)
        view = self._view(done)
        image = done.frame.image
        region = self._region(image.shape)
        box = (region.x, region.y, region.width, region.height)
        shape = (round(image.shape[0] * FLOW_WIDTH / image.shape[1]), FLOW_WIDTH)
        full = [np.stack([embed(m, box, image.shape, shape) for m in maps]) for maps in self._maps(done, view)]
        self.carrier.update(image, done.frame.index, full, view.smooth)

    def stats(self) -> Stats:
        return replace(super().stats(), model_fps=self.model_rate.rate, map_age=self.map_age)

    def _pace(self, index: int, start: tuple[int, float] | None) -> tuple[int, float]:
        """A file plays at its own frame rate, as a camera would deliver it, not as fast as we can draw."""
        fps = getattr(self.reader.source, "fps", 0.0) or 0.0
        if start is None or self.reader.source.live or fps <= 0:
            return start or (index, self.clock())
        wait = start[1] + (index - start[0]) / fps - self.clock()
        if wait > 0:
            time.sleep(wait)
        return start

    def run(self, max_frames: int | None = None) -> RunSummary:
        end_reason = "no frames"
        start: tuple[int, float] | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="inference") as pool:
            pending: Future[Inference] | None = None
            while not self.stop_requested:
                frame = self.reader.get()
                if frame is None:
                    break
                start = self._pace(frame.index, start)
                if pending is not None and pending.done():
                    self._adopt(pending.result())
                    pending = None
                if pending is None:  # the model is free: give it the newest frame
                    target = self.latest.frame if (self.controls.frozen and self.latest) else frame
                    pending = pool.submit(self._infer, target, self.controls)
                if self.latest is None:  # the very first map: wait for it once
                    self._adopt(pending.result())
                    pending = None
                assert self.latest is not None
                shown = self.latest.frame if self.controls.frozen else frame
                t, c = self.clock(), time.thread_time()
                maps = self.carrier.carry(shown.image, shown.index)
                self.map_age = shown.index - self.carrier.index
                t, c = self._timed("flow", t, c)
                view = self._view(self.latest)
                image, hud = self._draw(shown.image, self.latest.results, maps, view, None)  # maps cover the frame
                self._timed("overlay", t, c)
                if self._present(image, hud, view, self.latest.results[0], shown) == QUIT:
                    end_reason = "quit"
                    break
                if max_frames is not None and self.display_rate.count >= max_frames:
                    end_reason = f"reached --max-frames {max_frames}"
                    break
            if pending is not None:
                pending.cancel()
        return self._summary(end_reason)
