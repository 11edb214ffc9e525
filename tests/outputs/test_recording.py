"""Recordings: the codec they hold, and a disk that cannot hold them."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.demo.models import demo_model_paths
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.outputs.recording import Recorder
from tests.helpers.commands import ROOT, file_size_limit


@pytest.mark.parametrize("suffix", [".avi", ".webm"])
def test_a_recording_the_disk_cannot_hold_keeps_the_previous_file_and_fails(tmp_path: Path, suffix: str) -> None:
    """Fault injection without root: a file-size limit on the recording process (RLIMIT_FSIZE, SIGXFSZ
    ignored), so OpenCV's writes fail past 64 kB as on a full disk."""
    out = tmp_path / f"talk{suffix}"
    out.write_bytes(b"the previous recording")
    proc = subprocess.run(
        [sys.executable, "-m", "realtime.live.cli", "--demo", "--max-frames", "40", "--record", str(out), "--providers",
         "cpu", "--no-window"], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
        preexec_fn=file_size_limit(64 * 1024),
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    message = [line for line in proc.stderr.splitlines() if "failed" in line]
    assert message and "previous" in message[-1] and "video written" not in proc.stderr, proc.stderr
    assert out.read_bytes() == b"the previous recording"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no partial file left behind


def _record(path: Path, frames: int = 12) -> str:
    """Write `frames` demo-sized frames through the recorder; the codec it says it wrote."""
    from realtime.outputs.recording import VideoRecorder

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
    from realtime.outputs import encoders

    def missing(*args: object) -> encoders.Encoder:
        raise ImportError("No module named 'av'")

    monkeypatch.setitem(encoders.BACKENDS, "pyav", missing)
    codec, note = _record(tmp_path / "talk.mp4").split("|")
    assert codec == "MPEG-4 Part 2" and _fourcc(tmp_path / "talk.mp4") == "fmp4:12"
    assert note.startswith("note: no H.264 encoder here (pip install av gives one), so talk.mp4 is MPEG-4 Part 2")


@pytest.fixture(scope="module")
def fair() -> LocalEngine:
    return LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0))


def test_the_recorder_is_built_with_its_frame_rate(fair: LocalEngine, tmp_path: Path) -> None:
    from realtime.live.start import LiveConfig, run_session
    from tests.helpers.video import write_video

    assert not isinstance(inspect.getattr_static(Recorder, "fps", None), property)  # no setter to call afterwards
    with Recorder(tmp_path / "a.avi", tmp_path, fps=12.5) as made:
        assert made.fps == 12.5 and made.recorder is not None and made.recorder.fps == 12.5
    video = write_video(tmp_path / "clip.mp4", 8, size=(160, 120), fps=24.0)
    record = tmp_path / "out.avi"
    config = LiveConfig(
        sources=(str(video),), models=(demo_model_paths()["fair"],), providers="cpu", record=record,
        snapshots=tmp_path / "snaps", window=False, max_frames=4, display="camera",
    )  # fmt: skip
    run_session(config)
    capture = cv2.VideoCapture(str(record))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(24.0)  # camera rate: the source's rate, from the start
    capture.release()
