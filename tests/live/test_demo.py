"""gradcam-live --demo: the video it writes without a display."""

from __future__ import annotations

from pathlib import Path

from realtime.live import cli
from tests.helpers.video import count_frames


def test_demo_command_writes_a_video_headless(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.mp4"
    assert cli.main(["--demo", "--max-frames", "12", "--record", str(out), "--providers", "cpu", "--no-window"]) == 0
    assert count_frames(out) == 12
    assert "video written to" in capsys.readouterr().err
