"""The newest-frame reader: live sources drop stale frames, files deliver every frame, bad sources say what to try."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.sources.kinds import FolderSource, SourceError, VideoCaptureSource, open_source
from realtime.sources.reader import Backoff, LatestFrameReader
from tests.helpers.video import write_video


class FakeCamera:
    """A live source; `script` says per read whether a frame comes (True) or the camera drops (False)."""

    live = True
    name = "fake camera"

    def __init__(self, script: list[bool], reopen_ok: bool = True, pace: threading.Event | None = None) -> None:
        self.script, self.reopen_ok, self.pace = list(script), reopen_ok, pace
        self.opens, self.reads = 0, 0

    def open(self) -> None:
        if self.opens > 0 and not self.reopen_ok:
            raise SourceError("no camera at index 0: try --source FILE or --demo")
        self.opens += 1

    def read(self) -> np.ndarray | None:
        if self.pace is not None:
            self.pace.wait(1.0)
        if not self.script:
            # an ended script behaves as a camera that stops delivering for good
            self.reopen_ok = False
            return None
        ok = self.script.pop(0)
        self.reads += 1
        return np.full((8, 8, 3), self.reads % 256, np.uint8) if ok else None

    def close(self) -> None:
        pass


def drain(reader: LatestFrameReader) -> list[int]:
    seen = []
    while (frame := reader.get(timeout=5.0)) is not None:
        seen.append(frame.index)
    return seen


def test_live_reader_drops_stale_frames_and_never_repeats() -> None:
    camera = FakeCamera([True] * 200)
    reader = LatestFrameReader(camera, Backoff(attempts=0), sleep=lambda s: None, log=lambda m: None)
    with reader:
        first = reader.get(timeout=5.0)
        assert first is not None
        threading.Event().wait(0.2)  # let the camera run ahead of us
        seen = [first.index, *drain(reader)]
    assert seen == sorted(set(seen)), "a frame was handed out twice or out of order"
    assert reader.dropped > 0 and len(seen) < reader.captured
    assert "lost" in reader.end_reason and "--demo" in reader.end_reason


def test_camera_dropout_is_reopened_with_backoff() -> None:
    camera = FakeCamera([True, True, False, True, True])
    delays: list[float] = []
    reader = LatestFrameReader(camera, Backoff(first=0.1, attempts=3), sleep=delays.append, log=lambda m: None)
    with reader:
        frames = drain(reader)
    assert reader.reconnects >= 1 and camera.opens >= 2
    assert delays[0] == pytest.approx(0.1)
    assert len(frames) >= 1


def test_camera_that_never_comes_back_ends_with_advice() -> None:
    camera = FakeCamera([True, False], reopen_ok=False)
    delays: list[float] = []
    reader = LatestFrameReader(
        camera, Backoff(first=0.1, factor=2, limit=0.3, attempts=3), sleep=delays.append, log=lambda m: None
    )
    with reader:
        drain(reader)
    assert delays == pytest.approx([0.1, 0.2, 0.3])
    assert "try --source FILE or --demo" in reader.end_reason


def test_file_reader_delivers_every_frame_then_ends(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", 12, (64, 48))
    with LatestFrameReader(open_source(str(video))) as reader:
        frames = drain(reader)
    assert frames == list(range(12))
    assert reader.end_reason == "end of stream" and reader.dropped == 0


def test_truncated_video_ends_cleanly(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", 40, (64, 48))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    with LatestFrameReader(VideoCaptureSource(str(video), live=False)) as reader:
        frames = drain(reader)
    assert 0 < len(frames) < 40
    assert reader.error is None and reader.end_reason.startswith("end of stream")
    assert f"after {len(frames)} of 40 frames" in reader.end_reason  # says the file stopped early


def test_folder_with_grey_bgra_and_broken_files(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a_grey.png"), np.full((9, 11), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "b_bgra.png"), np.full((9, 11, 4), 77, np.uint8))
    (tmp_path / "c_broken.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "d_colour.jpg"), np.full((5, 7, 3), 30, np.uint8))
    source = FolderSource(tmp_path)
    with LatestFrameReader(source) as reader:
        images = []
        while (frame := reader.get(timeout=5.0)) is not None:
            images.append(frame.image)
    assert [img.shape for img in images] == [(9, 11, 3), (9, 11, 3), (5, 7, 3)]
    assert all(img.dtype == np.uint8 for img in images)
    assert [p.name for p in source.skipped] == ["c_broken.jpg"]
    assert reader.end_reason == "end of stream; skipped 1 unreadable file(s): c_broken.jpg"


def test_empty_folder_and_missing_source_say_what_to_try(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no images"):
        FolderSource(tmp_path).open()
    with pytest.raises(SourceError, match="--demo"):
        open_source(str(tmp_path / "missing.mp4"))


def test_an_undecodable_file_gets_advice_for_files(tmp_path: Path) -> None:
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(SourceError, match="not a video OpenCV can decode"):
        VideoCaptureSource(str(junk), live=False).open()


def test_absent_camera_says_try_file_or_demo() -> None:
    with pytest.raises(SourceError, match="try --source FILE or --demo"):
        VideoCaptureSource(97, live=True).open()


def test_bad_frames_are_skipped_not_fatal() -> None:
    class Mixed(FakeCamera):
        live = False

        def read(self):
            self.reads += 1
            if self.reads > 4:
                return None
            return np.zeros((0, 0, 3), np.uint8) if self.reads % 2 else np.zeros((4, 4), np.uint8)

    with LatestFrameReader(Mixed([])) as reader:
        frames = drain(reader)
    assert len(frames) == 2 and reader.bad_frames == 2
