"""Files that survive being stopped, and inputs that change under the loop (issue: Hardening)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.controls import Controls
from realtime.engine import Engine, EngineOptions
from realtime.flow import MapCarrier
from realtime.loop import Loop
from realtime.session import record_rate
from realtime.sourceset import SourceSet
from tests.conftest import Collect, count_frames

ROOT = Path(__file__).resolve().parents[1]


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

    engine = Engine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=1))
    with SourceSet([ResizingSource()]) as sources:  # type: ignore[list-item]
        summary = Loop(engine, sources, Controls(), display="camera").run()
    assert summary.displayed == 24 and summary.end_reason == "end of stream"


def test_recordings_play_at_the_rate_frames_were_shown() -> None:
    assert record_rate("camera", 250.0, 30.0) == 30.0  # camera rate: the source's
    assert record_rate("model", 250.0, 30.0) == 4.0  # model rate: one frame per result
    assert record_rate("model", 10.0, 30.0) == 30.0  # never faster than the source
    assert record_rate("model", 250.0, 0.0) == 4.0  # a folder has no rate of its own


def _live(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "realtime.cli", *args], cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_gradcam_live_with_a_playable_recording(sig: int, tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    proc = _live(["--demo", "--no-window", "--record", str(out), "--providers", "cpu"], tmp_path)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".demo.*.partial.mp4")) and time.monotonic() < deadline:
        time.sleep(0.2)  # recording has started
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-1500:]
    assert "Traceback" not in err
    assert "frames shown (stopped)" in err  # the summary line
    frames = count_frames(out)
    assert frames > 5
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) == pytest.approx(30.0, abs=0.5)  # camera rate
    assert not list(tmp_path.glob(".*partial*"))


def test_a_killed_export_leaves_the_old_model_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    """SIGKILL at several moments: the destination is always the old file or a complete new one."""
    torch = pytest.importorskip("torch")
    sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
    ).eval()  # fmt: skip
    source = tmp_path / "m.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 32, 32), str(source), opset_version=17, dynamo=False)
    target = tmp_path / "out" / "model.onnx"
    target.parent.mkdir()
    target.write_bytes(b"the old, good model")
    argv = [sys.executable, "-m", "realtime.export.cli", "--onnx", str(source), "--output", str(target), "--quiet"]
    for delay in (0.5, 1.0, 1.5, 2.0, 2.5):
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        data = target.read_bytes()
        assert data == b"the old, good model" or _complete(target), f"broken file after a kill at {delay} s"
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)  # a normal run
    assert _complete(target)
    assert not list(target.parent.glob(".*tmp")), "stale temporary files were not removed"


def test_sigterm_during_an_export_removes_its_temporary_file(tmp_path: Path) -> None:
    from realtime.export.graph import writing

    script = (
        "import os, signal, sys, time, onnx\n"
        "from pathlib import Path\n"
        "from realtime.export import cli\n"
        "from realtime.export.graph import writing\n"
        "signal.signal(signal.SIGTERM, cli._interrupt)\n"
        "def slow(path):\n"
        "    print('checking', flush=True); time.sleep(30)\n"
        "try:\n"
        f"    writing.save_checked(onnx.ModelProto(), Path({str(tmp_path / 'x.onnx')!r}), slow)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "checking"
    assert list(tmp_path.glob(f"*{writing.TMP_SUFFIX}"))  # the temporary file exists while checking
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130
    assert not list(tmp_path.glob(f"*{writing.TMP_SUFFIX}")) and not (tmp_path / "x.onnx").exists()


def _complete(path: Path) -> bool:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception:
        return False
    return True


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
        done = subprocess.run([sys.executable, "-m", "realtime.cli", *args], cwd=ROOT, capture_output=True, text=True)
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


def test_a_failing_snapshot_or_recording_is_reported_and_the_loop_goes_on(tmp_path: Path) -> None:
    from realtime.demo.live import DemoSource
    from realtime.demo.models import demo_model_paths
    from realtime.outputs import Recorder, Snapshots

    engine = Engine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0))
    keys = Collect([ord("s"), -1, ord("r"), -1, -1, -1, -1, -1, -1, -1])
    blocked = tmp_path / "file"
    blocked.write_text("x")
    messages: list[str] = []
    recording = Recorder(None, blocked / "videos", log=messages.append)  # the r key records under a file: it fails
    snapshots = Snapshots(blocked / "snaps", log=messages.append)  # the s key too
    with SourceSet([DemoSource(paced=False)]) as sources:
        summary = Loop(engine, sources, Controls(), [keys, recording, snapshots], log=messages.append).run(8)
    assert summary.displayed == 8
    assert any(m.startswith("snapshot failed") for m in messages), messages
    assert any(m.startswith("record failed") for m in messages), messages
    assert recording.failure is not None and recording.recorder is None  # stopped, not crashed


def test_a_folder_of_images_always_gets_its_own_map(tmp_path: Path) -> None:
    """No frame rate, so no camera-rate display carrying the first image's map onto the next ones."""
    from realtime.demo.models import demo_model_paths

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((60, 80, 3), 60 * i, np.uint8))
    argv = ["--source", str(tmp_path), "--model", str(demo_model_paths()["fair"]), "--no-window", "--providers", "cpu"]
    done = subprocess.run([sys.executable, "-m", "realtime.cli", *argv], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-800:]
    assert "display at model rate" in done.stderr and "3 frames shown" in done.stderr
