"""The live loop on a detector graph: boxes and the chosen box's map drawn, keys and clicks pick the box,
mirroring moves the boxes with the picture, and gradcam-live --demo detectors records without a display.

References: the engine called by hand on the same frame; the scenes' ground-truth boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from realtime.demo.models import demo_model_paths
from realtime.engines.detector import DetectorEngine
from realtime.engines.providers import EngineOptions
from realtime.engines.result import DetectResult
from realtime.live import cli
from realtime.live.loop import Loop
from realtime.maps.query import ALL_BOXES, Query
from realtime.outputs.controls import Controls, apply_key
from realtime.outputs.window import box_under
from realtime.sources import scenes
from realtime.sources.fitting import letterbox
from realtime.sources.group import SourceSet
from realtime.view.look import Look
from tests.helpers.collect import Collect
from tests.helpers.sources import LoopSource
from tests.helpers.video import count_frames


@pytest.fixture(scope="module")
def engine() -> DetectorEngine:
    return DetectorEngine(demo_model_paths("detectors")["fair"], EngineOptions(providers="cpu"))


def _scene() -> scenes.Scene:
    return scenes.dataset(2, seed=21, biased=False, size=(240, 320))[1]


def _run(engine: DetectorEngine, frame: np.ndarray, controls: Controls, keys: tuple[int, ...] = ()) -> Collect:
    seen = Collect(keys)
    with SourceSet([LoopSource([frame] * 6, fps=1000.0)]) as sources:
        Loop(engine, sources, controls, [seen]).run(max_frames=6)
    return seen


def test_the_loop_draws_the_engines_boxes_and_a_click_picks_the_box_under_it(engine) -> None:
    scene = _scene()
    seen = _run(engine, scene.image, Controls(Query(method="layercam")))
    shown = seen.shown[-1]
    result = shown.results[0]
    assert isinstance(result, DetectResult) and int(result.count[0]) >= 1
    direct = engine.run(letterbox(scene.image, (256, 256))[0][None], [[-1]])
    np.testing.assert_allclose(result.boxes[0, :1], direct.boxes[0, :1], atol=1e-3)
    assert shown.huds[0].label.startswith(scenes.CLASSES[scene.label])
    x, y, w, h = scene.box
    assert box_under(shown, x + w // 2, y + h // 2) == 0  # the best box, under the animal's centre
    assert box_under(shown, 2, 2) is None  # a corner of the savanna or the snow: no box


def test_mirroring_moves_the_boxes_with_the_picture(engine) -> None:
    scene = _scene()
    plain = _run(engine, scene.image, Controls(Query(method="layercam"))).shown[-1]
    mirror = _run(engine, scene.image, Controls(Query(method="layercam"), Look(mirror=True))).shown[-1]
    x, y, w, h = scene.box
    width = scene.image.shape[1]
    assert box_under(mirror, width - 1 - (x + w // 2), y + h // 2) == 0
    assert box_under(plain, x + w // 2, y + h // 2) == 0


def test_keys_step_through_the_boxes_and_fuse_them_all() -> None:
    start = Controls(Query(method="layercam"))
    after_n, _ = apply_key(start, ord("n"), frozenset({"gradients"}))
    assert after_n.query.box == 1 and start.query.box == 0
    fused, _ = apply_key(after_n, ord("b"), frozenset({"gradients"}))
    assert fused.query.box == ALL_BOXES and apply_key(fused, ord("b"), frozenset())[0].query.box == 0


def test_a_frame_with_no_detection_draws_the_frame_and_no_map(engine) -> None:
    blank = np.zeros((240, 320, 3), np.uint8)
    shown = _run(engine, blank, Controls(Query(method="gradcam"))).shown[-1]
    result = shown.results[0]
    assert isinstance(result, DetectResult) and int(result.count[0]) == 0
    np.testing.assert_array_equal(shown.image[:240, :320], blank)  # nothing blended, nothing drawn on it


def test_the_detector_demo_records_headless(tmp_path: Path, capsys) -> None:
    out = tmp_path / "detectors.mp4"
    argv = ["--demo", "detectors", "--max-frames", "10", "--record", str(out), "--providers", "cpu", "--no-window"]
    assert cli.main(argv) == 0
    assert count_frames(out) == 10
    assert "video written to" in capsys.readouterr().err
