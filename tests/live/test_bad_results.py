"""gradcam-live on a local graph whose logits overflow to +inf (what an fp16 overflow gives): a "bad result"
panel and one line that says why, never the caption crash it was ("cannot convert float NaN to integer")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.live import cli
from tests.helpers.video import count_frames, write_video


def _overflowing(graph: Path, out: Path) -> Path:
    model = onnx.load(str(graph))
    bias = next(init for init in model.graph.initializer if init.name == "fc2.b")
    values = numpy_helper.to_array(bias).copy()
    values[0] = np.inf
    bias.CopyFrom(numpy_helper.from_array(values.astype(np.float32), bias.name))
    onnx.save(model, str(out))
    return out


def test_a_graph_whose_logits_overflow_shows_a_bad_result_and_runs_on(small_models, tmp_path: Path, capsys) -> None:
    model = _overflowing(small_models["full"], tmp_path / "overflowing.onnx")
    clip, out = write_video(tmp_path / "clip.mp4", 10), tmp_path / "out.webm"
    argv = ["--model", str(model), "--source", str(clip), "--no-window", "--record", str(out), "--providers", "cpu"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and count_frames(out) == 10
    complaints = [line for line in err.splitlines() if "bad result" in line]
    assert len(complaints) == 1 and "NaN or Inf" in complaints[0], err  # once, not once a frame
