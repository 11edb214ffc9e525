"""The newcomer's path (#28): the README's install leaves a working window, and what the tools say is true."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from realtime import outputs


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
