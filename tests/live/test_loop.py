"""The live loop end to end: frames through models to outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.live import cli
from realtime.live.loop import Loop
from realtime.maps.explain import maps_for
from realtime.maps.query import Query
from realtime.outputs.controls import Controls
from realtime.outputs.recording import Recorder
from realtime.sources.fitting import fit
from realtime.sources.group import SourceSet
from realtime.sources.kinds import open_source
from tests.helpers.classifiers import LABELS, export_small
from tests.helpers.collect import Collect
from tests.helpers.commands import ROOT
from tests.helpers.video import count_frames, write_video


def test_a_folder_of_images_always_gets_its_own_map(tmp_path: Path) -> None:
    """No frame rate, so no camera-rate display carrying the first image's map onto the next ones."""
    from realtime.demo.models import demo_model_paths

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((60, 80, 3), 60 * i, np.uint8))
    argv = ["--source", str(tmp_path), "--model", str(demo_model_paths()["fair"]), "--no-window", "--providers", "cpu"]
    done = subprocess.run([sys.executable, "-m", "realtime.live.cli", *argv], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-800:]
    assert "display at model rate" in done.stderr and "3 frames shown" in done.stderr


def test_loop_end_to_end_on_a_video(small_models, tmp_path: Path) -> None:
    video = write_video(tmp_path / "in.mp4", 15)
    engine = LocalEngine(small_models["full"], EngineOptions(providers="cpu"))
    seen = Collect()
    with SourceSet([open_source(str(video))]) as sources, Recorder(tmp_path / "out.avi", tmp_path) as recorder:
        summary = Loop(engine, sources, Controls(Query(method="gradcam++")), [recorder, seen]).run()
    assert summary.displayed == 15 and summary.captured == 15
    assert summary.end_reason == "end of stream"
    assert count_frames(tmp_path / "out.avi") == 15
    image = seen.shown[-1].image
    assert image.shape[1] == 640 and image.shape[0] > 480  # the caption goes under the frame
    source = seen.shown[-1].frames[0]
    assert source is not None
    # the picture is not covered: outside the model's map, the frame shows through untouched
    np.testing.assert_array_equal(seen.shown[-1].image[:480].shape, source.image.shape)
    # the HUD names what the engine itself says about the last frame
    import cv2

    cap = cv2.VideoCapture(str(video))
    last = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        last = frame
    direct = engine.run(fit(last, (64, 64))[None], [[-1]])
    hud = summary.last_huds[0]
    assert hud.label == LABELS[int(direct.classes[0, 0])]
    assert hud.probability == pytest.approx(float(direct.probabilities[0].max()), rel=1e-4)
    assert hud.method == "gradcam++"
    assert summary.stats.display_fps > 0 and summary.stats.model_ms > 0 and summary.stats.latency_ms > 0


def test_guided_gradcam_live_end_to_end_at_both_display_rates(tmp_path: Path, capsys) -> None:
    """gradcam-live --method guided-gradcam --source clip.mp4 --no-window --record out.mp4, at model rate
    and at camera rate (where the 64x64 map is carried by flow like any other)."""
    model = export_small(tmp_path, "full", input_gradients="both", output=tmp_path / "guided.onnx")
    clip = write_video(tmp_path / "clip.mp4", 10)
    for display in ("model", "camera"):
        out = tmp_path / f"{display}.mp4"
        argv = ["--model", str(model), "--source", str(clip), "--method", "guided-gradcam", "--no-window"]
        assert cli.main([*argv, "--record", str(out), "--display", display, "--providers", "cpu"]) == 0
        assert count_frames(out) == 10
    assert cli.main(["--model", str(model), "--source", str(clip), "--method", "saliency", "--no-window"]) == 0
    engine = LocalEngine(model, EngineOptions(providers="cpu", warmup=0))
    result = engine.run(np.zeros((1, 64, 64, 3), np.uint8), [[-1]])
    assert result.guided is not None and result.guided.shape == (1, 1, 64, 64, 3)
    assert maps_for(result, 0, Query(method="guided-gradcam"), None).shape == (1, 64, 64)
