"""Snapshots and saved frames: what they say, and the show going on when they fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.live.loop import Loop
from realtime.outputs.controls import Controls
from realtime.outputs.stills import FrameSaver
from realtime.sources.group import SourceSet
from tests.helpers.collect import Collect


def test_a_failing_snapshot_or_recording_is_reported_and_the_loop_goes_on(tmp_path: Path) -> None:
    from realtime.demo.models import demo_model_paths
    from realtime.outputs.recording import Recorder
    from realtime.outputs.stills import Snapshots
    from realtime.sources.demo import DemoSource

    engine = LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0))
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


def test_save_frames_that_cannot_be_written_stop_with_a_line_and_the_show_goes_on(tmp_path: Path, monkeypatch) -> None:
    from realtime import files
    from realtime.outputs import stills

    said: list[str] = []
    saver = FrameSaver(tmp_path / "frames", every=1, log=said.append)
    monkeypatch.setattr(stills, "write_image", lambda path, image: False)  # as a full disk answers
    frame = type("Frame", (), {"image": np.zeros((8, 8, 3), np.uint8)})()
    shown = type("Shown", (), {"frames": (frame,)})()
    saver.write(shown)  # type: ignore[arg-type]
    saver.write(shown)  # type: ignore[arg-type]
    assert saver.saved == 0 and saver.failure and len(said) == 1 and "stopped after 0 frames" in said[0]
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert files.write_image(blocker / "x.png", np.zeros((8, 8, 3), np.uint8)) is False  # no traceback


def test_save_frames_says_how_many_it_kept_and_why(tmp_path: Path) -> None:
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


def test_snapshots_asked_for_every_frame_are_limited_in_rate_and_number(tmp_path: Path, monkeypatch) -> None:
    """A browser view's client can ask for a snapshot on every frame: at most two a second are written, and
    MAX_SNAPSHOTS a run, with one line when the limit is reached."""
    from realtime.outputs import stills
    from realtime.outputs.controls import SNAPSHOT

    class Shown:  # what act reads of a presented frame
        image = np.zeros((24, 32, 3), np.uint8)

    def ask_every_frame(folder: Path, seconds: float) -> tuple[stills.Snapshots, list[str]]:
        now, messages = [0.0], []
        snapshots = stills.Snapshots(folder, log=messages.append, clock=lambda: now[0])
        for step in range(int(seconds * 30)):  # 30 FPS, a snapshot asked on every frame
            now[0] = step / 30
            snapshots.act((SNAPSHOT,), Shown())  # type: ignore[arg-type]
        return snapshots, messages

    rated, _ = ask_every_frame(tmp_path / "rate", 10.0)
    assert len(rated.saved) == 20  # two a second
    monkeypatch.setattr(stills, "MAX_SNAPSHOTS", 5)
    capped, messages = ask_every_frame(tmp_path / "cap", 10.0)
    assert len(capped.saved) == 5 == len(list((tmp_path / "cap").glob("*.png")))
    assert sum("no more" in m for m in messages) == 1
