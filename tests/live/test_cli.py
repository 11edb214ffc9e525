"""gradcam-live's command line: its options, its refusals, what it says."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.live import cli
from realtime.live.start import record_rate
from tests.helpers.commands import ROOT, run_in_process
from tests.helpers.video import count_frames, write_video


def test_recordings_play_at_the_rate_frames_were_shown() -> None:
    assert record_rate("camera", 250.0, 30.0) == 30.0  # camera rate: the source's
    assert record_rate("model", 250.0, 30.0) == 4.0  # model rate: one frame per result
    assert record_rate("model", 10.0, 30.0) == 30.0  # never faster than the source
    assert record_rate("model", 250.0, 0.0) == 4.0  # a folder has no rate of its own


def test_bad_output_paths_fail_in_the_first_second(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        ["--demo", "--no-window", "--record", str(tmp_path / "out.txt")],
        ["--demo", "--no-window", "--record", str(blocker / "out.mp4")],
        ["--demo", "--no-window", "--snapshots", str(blocker / "snaps")],
        ["--demo", "--no-window", "--save-frames", str(blocker)],
    ]
    for args in cases:
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "realtime.live.cli", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 2, args
        assert "gradcam-live:" in done.stderr and "Traceback" not in done.stderr
        assert time.monotonic() - start < 5.0  # the import of the package, then at once
    done = subprocess.run(
        [sys.executable, "-m", "realtime.image_cli", str(blocker), "--output", str(tmp_path / "x.txt")],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "must end in" in done.stderr
    bad_alpha = subprocess.run(
        [sys.executable, "-m", "realtime.image_cli", str(blocker), "--output", "x.png", "--alpha", "3"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert bad_alpha.returncode == 2 and "between 0 and 1" in bad_alpha.stderr


def test_a_folder_with_no_readable_image_ends_non_zero(tmp_path: Path, capsys) -> None:
    from realtime.demo.models import demo_model_paths
    from realtime.live import cli

    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a png")
    code = cli.main(["--model", str(demo_model_paths()["fair"]), "--source", str(folder), "--no-window",
                     "--providers", "cpu", "--record", str(tmp_path / "out.avi")])  # fmt: skip
    assert code == 1 and "no frame was shown" in capsys.readouterr().err
    assert not (tmp_path / "out.avi").exists()


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


def test_no_tf32_reaches_the_engine_options() -> None:
    assert cli.parse_config([]).tf32 is True
    assert cli.parse_config(["--no-tf32"]).tf32 is False


def test_a_folder_source_says_folder_not_0_fps(tiny_onnx: Path, tmp_path: Path) -> None:
    graph = tmp_path / "g.onnx"
    assert (
        run_in_process("realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(graph), "--quiet").returncode
        == 0
    )
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((40, 40, 3), 90, np.uint8))
    proc = run_in_process(
        "realtime.live.cli", "--model", str(graph), "--source", str(folder), "--no-window", "--providers", "cpu"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"source folder {folder}: no frame rate" in proc.stderr and "0 FPS)" not in proc.stderr


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("realtime.live.cli", ["--demo", "--record", "/proc/x.webm"]),
        ("realtime.export.cli", ["--output", "/proc/x.onnx"]),
        ("realtime.live.cli", ["--demo", "--save-frames", "/proc/frames"]),
    ],
)
def test_an_unwritable_output_is_refused_in_the_first_second(
    module: str, args: list[str], tiny_onnx: Path
) -> None:  # fmt: skip
    """/proc passes os.access as root; only trying to create a file there shows it cannot hold one (as
    another user, os.access already says no)."""
    args = [*args, "--onnx", str(tiny_onnx)] if module == "realtime.export.cli" else args
    start = time.perf_counter()
    proc = run_in_process(module, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    refused = "cannot create a file in /proc" in proc.stderr or "/proc is not writable" in proc.stderr
    assert refused and time.perf_counter() - start < 2.0, proc.stderr  # no model was loaded first
