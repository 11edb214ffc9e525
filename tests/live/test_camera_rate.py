"""The camera-rate view: every camera frame, maps carried, scene cuts."""

from __future__ import annotations

import time

import numpy as np
import pytest

from realtime.demo.models import demo_model_paths
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.live.loop import Loop
from realtime.live.start import choose_display
from realtime.maps.flow import MapCarrier
from realtime.outputs.controls import Controls
from realtime.sources.demo import DemoSource
from realtime.sources.group import SourceSet
from tests.helpers.collect import Collect


def test_auto_display_picks_camera_only_for_slow_models() -> None:
    assert choose_display("auto", 120.0, 30.0) == "camera"
    assert choose_display("auto", 15.0, 30.0) == "model"
    assert choose_display("model", 120.0, 30.0) == "model"
    with pytest.raises(ValueError, match="sometimes"):
        choose_display("sometimes", 1.0, 30.0)


@pytest.fixture(scope="module")
def fair() -> LocalEngine:
    return LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=1))


class SlowEngine:
    """An engine that takes `delay` seconds per call: a VGG16 on a small device, in miniature."""

    def __init__(self, engine: LocalEngine, delay: float) -> None:
        self._engine, self._delay = engine, delay

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def run(self, *args, **kwargs):
        time.sleep(self._delay)
        return self._engine.run(*args, **kwargs)


def test_camera_rate_loop_shows_every_frame_of_a_slow_model(fair: LocalEngine) -> None:
    slow = SlowEngine(fair, 0.1)
    seen = Collect()
    with SourceSet([DemoSource()]) as sources:
        summary = Loop([slow], sources, Controls(), [seen], display="camera").run(60)  # type: ignore[list-item]
    hud_ages = [shown.huds[0].map_age for shown in seen.shown]
    stats = summary.stats
    assert summary.displayed == 60
    assert stats.model_fps is not None and stats.model_fps <= 11
    assert stats.display_fps >= max(20.0, 2 * stats.model_fps)  # the display does not wait for the model
    assert max(a for a in hud_ages if a is not None) >= 2  # the map was carried over several frames
    assert summary.last_huds[0].map_age is not None


def test_camera_rate_plays_a_file_at_its_own_frame_rate(fair: LocalEngine, tmp_path) -> None:
    from realtime.sources.kinds import open_source
    from tests.helpers.video import write_video

    video = write_video(tmp_path / "clip.mp4", 15, fps=30.0)
    with SourceSet([open_source(str(video))]) as sources:
        loop = Loop(fair, sources, Controls(), display="camera")
        start = time.perf_counter()
        summary = loop.run()
        elapsed = time.perf_counter() - start
    assert summary.displayed == 15 and summary.end_reason == "end of stream"
    assert elapsed >= 14 / 30 - 0.02  # not faster than the file's 30 FPS


def test_a_new_frame_size_is_a_scene_cut_not_a_crash() -> None:
    carrier = MapCarrier()
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    carrier.update(frame, 0, [np.ones((1, 7, 7), np.float32)])
    wide = np.random.default_rng(1).integers(0, 256, (360, 1280, 3), dtype=np.uint8)
    maps = carrier.carry(wide, 1)
    assert carrier.residual == float("inf")
    assert maps[0].shape[1] / maps[0].shape[2] == pytest.approx(360 / 1280, rel=0.05)
    carrier.update(wide, 2, [np.ones((1, 7, 7), np.float32)], smooth=0.5)  # smoothing across the change too
    assert carrier.carry(wide, 3)[0].shape == maps[0].shape


class ResizingSource:
    """A 30 FPS file-like source whose frames change size and aspect halfway."""

    live, name, fps = False, "resizing", 30.0

    def __init__(self, frames: int = 24) -> None:
        self.left = frames

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        if self.left == 0:
            return None
        self.left -= 1
        shape = (480, 640, 3) if self.left >= 12 else (300, 900, 3)
        return np.full(shape, 40 + 8 * self.left, np.uint8)

    def close(self) -> None:
        pass


def test_the_camera_rate_loop_survives_a_resize_mid_stream() -> None:
    from realtime.demo.models import demo_model_paths

    engine = LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=1))
    with SourceSet([ResizingSource()]) as sources:  # type: ignore[list-item]
        summary = Loop(engine, sources, Controls(), display="camera").run()
    assert summary.displayed == 24 and summary.end_reason == "end of stream"
