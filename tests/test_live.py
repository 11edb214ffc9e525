"""The live loop end to end, headless, on generated video; CLI errors and keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from realtime import cli, image_cli
from realtime.cam import smooth_maps
from realtime.controls import QUIT, SNAPSHOT, Controls, apply_key, targets_for
from realtime.engine import Engine, EngineOptions
from realtime.frames import fit
from realtime.loop import Loop
from realtime.outputs import Recorder
from realtime.panels import panel_maps
from realtime.sources import open_source
from realtime.sourceset import SourceSet
from tests.conftest import LABELS, Collect, count_frames, write_video

FULL, POOLED = frozenset({"gradients"}), frozenset()  # what a full and a pooled graph provide


def test_loop_end_to_end_on_a_video(small_models, tmp_path: Path) -> None:
    video = write_video(tmp_path / "in.mp4", 15)
    engine = Engine(small_models["full"], EngineOptions(providers="cpu"))
    seen = Collect()
    with SourceSet([open_source(str(video))]) as sources, Recorder(tmp_path / "out.avi", tmp_path) as recorder:
        summary = Loop(engine, sources, Controls(method="gradcam++"), [recorder, seen]).run()
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


def test_cli_records_and_reports(small_models, tmp_path: Path, capsys) -> None:
    video = write_video(tmp_path / "in.mp4", 8)
    out = tmp_path / "rec.mp4"
    code = cli.main(
        [
            "--source",
            str(video),
            "--model",
            str(small_models["pooled"]),
            "--no-window",
            "--record",
            str(out),
            "--providers",
            "cpu",
            "--top-k",
            "2",
            "--max-frames",
            "6",
            "--smooth",
            "0.5",
        ]
    )
    assert code == 0
    assert count_frames(out) == 6
    assert "6 frames shown" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "MISSING.onnx"], "gradcam-export"),
        (["--source", "nope.mp4"], "try --source FILE or --demo"),
        (["--source", "97"], "try --source FILE or --demo"),
        (["--class", "snow leopardd"], "did you mean 'snow leopard'"),
        (["--class", "12"], "ids run from 0 to 3"),
        (["--method", "layercam"], "--gradients full"),
    ],
)
def test_cli_errors_say_what_to_do(small_models, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    video = write_video(tmp_path / "in.mp4", 2)
    base = {"--source": str(video), "--model": str(small_models["pooled"])}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = [x for kv in base.items() for x in kv] + ["--no-window", "--providers", "cpu"]
    if "--method" in args:
        argv += ["--method", "layercam"]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_option_values_are_rejected_by_argparse() -> None:
    for argv in (["--smooth", "2"], ["--top-k", "0"], ["--method", "nope"], ["--providers", "metal"]):
        with pytest.raises(SystemExit):
            cli.parse_config(argv)


def test_keys_change_controls_and_never_mutate() -> None:
    start = Controls()
    after, action = apply_key(start, ord("m"), FULL)
    assert after.method == "gradcam++" and start.method == "gradcam" and action is None
    assert apply_key(start, ord("m"), POOLED)[0].method == "counterfactual"  # a pooled graph has two methods
    assert apply_key(start, ord("3"), FULL)[0].rank == 2
    assert apply_key(Controls(class_name="dog", rank=2), ord("0"), FULL)[0] == Controls()
    assert apply_key(start, ord("o"), FULL)[0].style == "tint" and start.style == "heat"
    assert apply_key(start, ord(" "), FULL)[0].frozen
    assert apply_key(start, 27, FULL)[1] == QUIT and apply_key(start, ord("q"), FULL)[1] == QUIT
    assert apply_key(start, ord("s"), FULL)[1] == SNAPSHOT
    assert apply_key(start, -1, FULL) == (start, None)


def test_targets_rows() -> None:
    assert targets_for(Controls(), None) == [-1]
    assert targets_for(Controls(rank=2), None) == [-1, -1, -1]
    assert targets_for(Controls(class_name="7", top_k=3), 7) == [7, -1, -1]


def test_rank_key_explains_the_kth_class(small_models) -> None:
    engine = Engine(small_models["full"], EngineOptions(providers="cpu", warmup=0))
    image = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    controls = apply_key(Controls(), ord("2"), True)[0]
    result = engine.run(image, [targets_for(controls, None)])
    second = int(np.argsort(-result.logits[0])[1])
    assert int(result.classes[0, controls.rank]) == second
    np.testing.assert_allclose(
        panel_maps(result, 0, controls, None)[0], result.cam[0, 1] / (result.cam[0, 1].max() + 1e-7), atol=1e-5
    )


def test_smoothing_is_an_ema() -> None:
    a, b = np.zeros((1, 2, 2)), np.ones((1, 2, 2))
    np.testing.assert_allclose(smooth_maps(a, b, 0.75), 0.25)
    assert smooth_maps(None, b, 0.75) is b
    assert smooth_maps(np.zeros((2, 2, 2)), b, 0.5) is b


def test_gradcam_image_reproduces_the_seed(small_models, tmp_path: Path) -> None:
    import cv2

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.full((100, 150, 4), 120, np.uint8))  # BGRA on purpose
    out = tmp_path / "out.png"
    assert (
        image_cli.main([str(src), "--output", str(out), "--model", str(small_models["full"]), "--method", "hirescam"])
        == 0
    )
    assert cv2.imread(str(out)).shape == (100, 150, 3)
    args = [str(src), "--output", str(out), "--model", str(small_models["full"]), "--caption", "--style", "tint"]
    assert image_cli.main(args) == 0
    captioned = cv2.imread(str(out))
    assert captioned.shape[0] > 100 and captioned.shape[1] == 150
    assert image_cli.main([str(tmp_path / "none.png"), "--output", str(out), "--model", str(small_models["full"])]) == 2


def test_runtime_never_imports_tensorflow() -> None:
    code = (
        "import sys, realtime, realtime.cli, realtime.engine, realtime.loop, realtime.image_cli, realtime.session;"
        "realtime.GradCam;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_no_tf32_reaches_the_engine_options() -> None:
    assert cli.parse_config([]).tf32 is True
    assert cli.parse_config(["--no-tf32"]).tf32 is False


def test_guided_gradcam_live_end_to_end_at_both_display_rates(tmp_path: Path, capsys) -> None:
    """gradcam-live --method guided-gradcam --source clip.mp4 --no-window --record out.mp4, at model rate
    and at camera rate (where the 64x64 map is carried by flow like any other)."""
    from realtime.export.pipeline import ExportConfig, export_model
    from tests.conftest import _small_classifier

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    config = ExportConfig(
        layer="last_conv", input_gradients="both", labels=labels, output=tmp_path / "guided.onnx", quiet=True
    )
    model = export_model(_small_classifier(), config).output
    clip = write_video(tmp_path / "clip.mp4", 10)
    for display in ("model", "camera"):
        out = tmp_path / f"{display}.mp4"
        argv = ["--model", str(model), "--source", str(clip), "--method", "guided-gradcam", "--no-window"]
        assert cli.main([*argv, "--record", str(out), "--display", display, "--providers", "cpu"]) == 0
        assert count_frames(out) == 10
    assert cli.main(["--model", str(model), "--source", str(clip), "--method", "saliency", "--no-window"]) == 0
    engine = Engine(model, EngineOptions(providers="cpu", warmup=0))
    result = engine.run(np.zeros((1, 64, 64, 3), np.uint8), [[-1]])
    assert result.guided is not None and result.guided.shape == (1, 1, 64, 64, 3)
    assert panel_maps(result, 0, Controls(method="guided-gradcam"), None).shape == (1, 64, 64)
