"""Stopping: a signal ends gradcam-live with a playable recording."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from tests.helpers.video import count_frames


def _live(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "realtime.live.cli", *args], cwd=tmp_path, env=env, text=True,
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
