"""Where drawn frames go: an OpenCV window with keys, a video recorder, snapshots."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from realtime.files import discard, finish, partial_path, remove_stale, write_image


class SinkError(RuntimeError):
    """A sink cannot be opened; the message says what to do."""


def has_display() -> bool:
    """Whether an OpenCV window can open here (X11/Wayland on Linux; always elsewhere)."""
    if os.name != "posix" or os.uname().sysname == "Darwin":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Window:
    """An OpenCV window; `show` returns the key pressed (or -1)."""

    def __init__(self, title: str = "gradcam-live") -> None:
        if not has_display():
            raise SinkError("no display here: use --no-window (with --record FILE or --serve PORT)")
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise SinkError(f"cannot open a window ({exc}); use --no-window") from exc

    def show(self, frame: np.ndarray) -> int:
        cv2.imshow(self.title, frame)
        return int(cv2.waitKey(1))

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class VideoRecorder:
    """Video writer that opens on the first frame, so its size follows what is drawn.

    It writes under a partial name and moves the file into place on close: a
    recording cut short by a kill never replaces a good one with a broken file.
    """

    def __init__(self, path: Path, fps: float = 15.0) -> None:
        self.path, self.fps = path, fps
        self.partial = partial_path(path)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SinkError(f"cannot write video {self.path}: {exc.strerror or exc}") from exc
            remove_stale(self.path.parent)
            codec = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter.fourcc(*codec), self.fps, size)
            if not writer.isOpened():
                discard(self.partial)
                raise SinkError(f"cannot write video {self.path}; try a .avi path")
            self._writer, self._size = writer, size
        if size != self._size:
            assert self._size is not None
            frame = cv2.resize(frame, self._size)
        assert self._writer is not None
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it into place (a recording with no frames leaves nothing)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if self.frames:
                finish(self.partial, self.path)
        discard(self.partial)


def save_snapshot(frame: np.ndarray, folder: Path, prefix: str = "gradcam") -> Path:
    """Write a PNG with a timestamped name; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}_{time.perf_counter_ns() % 1000000:06d}.png"
    if not write_image(path, frame):
        raise SinkError(f"cannot write snapshot {path}")
    return path


class RecordSwitch:
    """A recorder the r key starts and stops; writes nothing while off.

    A recording started with the r key that cannot be written stops with a message in
    `failure`, and the loop goes on; the --record file was checked before the start.
    """

    def __init__(self, path: Path | None, folder: Path, fps: float = 15.0) -> None:
        self.folder, self._fps = folder, fps
        self.recorder: VideoRecorder | None = VideoRecorder(path, fps) if path else None
        self.toggled = False
        self.failure: str | None = None

    def write(self, frame: np.ndarray) -> None:
        if self.recorder is None:
            return
        try:
            self.recorder.write(frame)
        except SinkError as exc:
            if not self.toggled:
                raise
            self.failure = str(exc)
            self.close()
            print(f"recording stopped: {exc}", file=sys.stderr)

    @property
    def fps(self) -> float:
        return self._fps

    @fps.setter
    def fps(self, value: float) -> None:
        """The playback rate, for the --record file too if it has not started yet."""
        self._fps = value
        if self.recorder is not None and self.recorder.frames == 0:
            self.recorder.fps = value

    def toggle(self) -> str:
        if self.recorder is not None:
            self.close()
            return "recording stopped"
        path = self.folder / f"gradcam_{time.strftime('%Y%m%d_%H%M%S')}.mp4"
        self.recorder, self.toggled, self.failure = VideoRecorder(path, self.fps), True, None
        return f"recording to {path}"

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None


class FrameSaver:
    """Keeps every n-th camera frame as a JPEG (calibration data for gradcam-export --int8)."""

    def __init__(self, folder: Path, every: int = 15, limit: int = 200) -> None:
        self.folder, self.every, self.limit = folder, every, limit
        self.seen = self.saved = 0

    def save(self, frame: np.ndarray) -> None:
        self.seen += 1
        if self.saved >= self.limit or (self.seen - 1) % self.every:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if not write_image(self.folder / f"frame_{self.saved:05d}.jpg", frame):
            raise SinkError(f"cannot write frames to {self.folder}")
        self.saved += 1
