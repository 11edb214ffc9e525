"""The newcomer's path (#28): the README's install leaves a working window, and what the tools say is true."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime import outputs
from tests.test_hardening2 import ROOT, _cli


def test_the_test_install_leaves_opencv_its_window_support() -> None:
    """pytorch-grad-cam requires opencv-python-headless, whose cv2 overwrites opencv-python's in the same
    venv (GUI: NONE); the README's test command installs it with --no-deps, so the demo's window still opens."""
    assert outputs.opencv_has_gui(), "OpenCV lost its GUI: pip uninstall opencv-python-headless, then " \
        "pip install --force-reinstall opencv-python"  # fmt: skip
    assert not outputs.headless_installed()
    assert metadata.distribution("opencv-python")  # the runtime's own requirement


def _record(path: Path, frames: int = 12) -> str:
    """Write `frames` demo-sized frames through the recorder; the codec it says it wrote."""
    from realtime.video import VideoRecorder

    said: list[str] = []
    recorder = VideoRecorder(path, 30.0, log=said.append)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        recorder.write(rng.integers(0, 256, (241, 321, 3), dtype=np.uint8))  # odd sizes: 4:2:0 wants even
    recorder.close()
    return recorder.codec + ("|" + said[0] if said else "")


def _fourcc(path: Path) -> str:
    capture = cv2.VideoCapture(str(path))
    try:
        code = int(capture.get(cv2.CAP_PROP_FOURCC))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).strip("\0").lower() + f":{count}"


def test_recordings_say_the_codec_they_hold_and_browsers_get_h264_and_vp8(tmp_path: Path) -> None:
    """The file's own FOURCC, read back by OpenCV's decoder, against what gradcam-live said it wrote."""
    said = _record(tmp_path / "talk.mp4")
    assert said == "H.264" and _fourcc(tmp_path / "talk.mp4") in ("h264:12", "avc1:12")  # no note: browsers play it
    assert _record(tmp_path / "talk.webm") == "VP8" and _fourcc(tmp_path / "talk.webm").startswith("vp80")
    codec, note = _record(tmp_path / "talk.avi").split("|")
    assert codec == "Motion JPEG" and _fourcc(tmp_path / "talk.avi") == "mjpg:12"
    assert "talk.avi is Motion JPEG" in note and "MPEG-4" not in note and "H.264 encoder" not in note


def test_without_pyav_mp4_falls_back_to_opencv_and_says_which_codec(tmp_path: Path, monkeypatch) -> None:
    from realtime import encoders

    def missing(*args: object) -> encoders.Encoder:
        raise ImportError("No module named 'av'")

    monkeypatch.setitem(encoders.BACKENDS, "pyav", missing)
    codec, note = _record(tmp_path / "talk.mp4").split("|")
    assert codec == "MPEG-4 Part 2" and _fourcc(tmp_path / "talk.mp4") == "fmp4:12"
    assert note.startswith("note: no H.264 encoder here (pip install av gives one), so talk.mp4 is MPEG-4 Part 2")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    from tests.test_real_world import _tiny_classifier

    return _tiny_classifier(tmp_path_factory.mktemp("tiny") / "tiny.onnx", ir_version=9)


def _steps(stderr: str) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for m in re.finditer(r"^\[(\d+)/(\d+)\]", stderr, re.MULTILINE)]


@pytest.mark.parametrize("options", [["--gradients", "pooled"], ["--gradients", "none"], ["--no-check"]])
def test_export_step_counters_count_the_steps_that_run(tiny_onnx: Path, tmp_path: Path, options: list[str]) -> None:
    proc = _cli("realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(tmp_path / "g.onnx"), *options)
    steps = _steps(proc.stderr)
    assert proc.returncode == 0 and steps, proc.stderr
    assert [k for k, _ in steps] == list(range(1, len(steps) + 1)) and {n for _, n in steps} == {len(steps)}


def test_int8_with_too_few_calibration_frames_says_so_and_checks_on_the_demo_scenes(
    tiny_onnx: Path, tmp_path: Path
) -> None:  # fmt: skip
    """8 saved frames: too few to hold any out. The check is not skipped in silence: one note says how many
    it needs, and the fidelity figures come from the demo scenes; the quantizer's advice is not shown."""
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        cv2.imwrite(str(calib / f"f{i}.jpg"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    proc = _cli("realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(tmp_path / "q.onnx"), "--int8",
                "--calibration", str(calib))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"note: --calibration {calib} has 8 images; the fidelity check needs 40 (32 to calibrate, 8 held out)" in (
        proc.stderr
    )
    assert "checked on the demo scenes instead" in proc.stderr and "--max-frames 600" in proc.stderr
    assert re.search(r"images 100, top1_agreement \d\.\d+, map_correlation", proc.stderr), proc.stderr
    assert "Please consider" not in proc.stderr and "pre-processing" not in proc.stderr
    steps = _steps(proc.stderr)
    assert steps[-1] == (6, 6), proc.stderr


def test_save_frames_says_how_many_it_kept_and_why(tmp_path: Path) -> None:
    from realtime.outputs import FrameSaver

    saver = FrameSaver(tmp_path / "calib", log=lambda _: None)
    frame = type("Frame", (), {"image": np.zeros((8, 8, 3), np.uint8)})()
    shown = type("Shown", (), {"frames": (frame,)})()
    for _ in range(120):
        saver.write(shown)  # type: ignore[arg-type]
    assert saver.saved == 8 == len(list((tmp_path / "calib").iterdir()))
    assert saver.report() == (
        f"kept 8 frames in {tmp_path / 'calib'} (every 15th of 120 shown); gradcam-export --int8 wants 40: "
        "run longer (--max-frames 600)"
    )


def test_a_folder_source_says_folder_not_0_fps(tiny_onnx: Path, tmp_path: Path) -> None:
    graph = tmp_path / "g.onnx"
    assert _cli("realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(graph), "--quiet").returncode == 0
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((40, 40, 3), 90, np.uint8))
    proc = _cli("realtime.cli", "--model", str(graph), "--source", str(folder), "--no-window", "--providers", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert f"source folder {folder}: no frame rate" in proc.stderr and "0 FPS)" not in proc.stderr


@pytest.mark.parametrize(
    ("module", "args"),
    [("realtime.cli", ["--demo", "--record", "/proc/x.webm"]), ("realtime.export.cli", ["--output", "/proc/x.onnx"]),
     ("realtime.cli", ["--demo", "--save-frames", "/proc/frames"])],
)  # fmt: skip
def test_an_unwritable_output_is_refused_in_the_first_second(
    module: str, args: list[str], tiny_onnx: Path
) -> None:  # fmt: skip
    """/proc passes os.access as root; only trying to create a file there shows it cannot hold one (as
    another user, os.access already says no)."""
    args = [*args, "--onnx", str(tiny_onnx)] if module == "realtime.export.cli" else args
    start = time.perf_counter()
    proc = _cli(module, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    refused = "cannot create a file in /proc" in proc.stderr or "/proc is not writable" in proc.stderr
    assert refused and time.perf_counter() - start < 2.0, proc.stderr  # no model was loaded first


def test_a_failed_export_leaves_no_empty_folder(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    from realtime.export import pipeline
    from realtime.export.checks import selfcheck

    def fails(*args: object, **kwargs: object) -> None:
        raise selfcheck.SelfCheckError("the backward is off")

    monkeypatch.setattr(pipeline.selfcheck, "check_layers", fails)
    for output in (tmp_path / "models" / "g.onnx", tmp_path / "deep" / "er" / "q.onnx"):
        int8 = ["--int8"] if "deep" in output.parts else []
        proc = _cli("realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(output), "--quiet", *int8)
        assert proc.returncode == 3 and "nothing written" in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_tensorflow_imports_without_its_cuda_driver_lines() -> None:
    pytest.importorskip("tensorflow")
    script = "from realtime.export.importers.keras import import_tensorflow; import_tensorflow()"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          check=False)  # fmt: skip
    assert proc.returncode == 0 and "cuda" not in proc.stderr.lower(), proc.stderr
