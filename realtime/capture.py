"""Frame sources behind one threaded reader that hands over the newest frame.

Live sources (cameras, network streams, the demo) drop stale frames rather
than queue them, and are reopened with back-off when they drop out. Files and
image folders deliver every frame and end cleanly at the end or at a
truncation. The reader never hands the same frame out twice.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from realtime.frames import BadFrameError, to_bgr

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class SourceError(RuntimeError):
    """A source cannot be opened; the message says what to try instead."""


class FrameSource(Protocol):
    """Something that yields frames. read() returns None at the end or on a dropout."""

    name: str
    live: bool

    @property
    def fps(self) -> float: ...  # the source's own frame rate, 0 when it has none

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class VideoCaptureSource:
    """A camera index, a video file, a URL or a GStreamer pipeline, through cv2.VideoCapture."""

    def __init__(self, spec: int | str, live: bool, size: tuple[int, int] | None = None) -> None:
        self.spec, self.live, self.size = spec, live, size
        self.name = f"camera {spec}" if isinstance(spec, int) else str(spec)
        self._cap: cv2.VideoCapture | None = None
        self.frames_read = 0
        self.frame_count = 0  # what a file's header promises (0: unknown, or not a file)

    def open(self) -> None:
        # OpenCV logs a page per backend it tries on a missing camera; our one-line error says it better
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            if isinstance(self.spec, str) and ("!" in self.spec):
                cap = cv2.VideoCapture(self.spec, cv2.CAP_GSTREAMER)
            else:
                cap = cv2.VideoCapture(self.spec)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if isinstance(self.spec, int) and self.size is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if not cap.isOpened():
            cap.release()
            if isinstance(self.spec, int):
                raise SourceError(f"no camera at index {self.spec}: try --source FILE or --demo")
            if not self.live:
                raise SourceError(
                    f"cannot open {self.spec}: not a video OpenCV can decode here; convert it "
                    "(ffmpeg -i IN -c:v libx264 OUT.mp4) or pass a folder of images"
                )
            raise SourceError(f"cannot open {self.spec}: check the address, or try --source FILE or --demo")
        self._cap = cap
        if not self.live:
            self.frame_count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        if ok:
            self.frames_read += 1
        return frame if ok else None

    def end_note(self) -> str:
        """Why a file ended early, if it did (its header promised more frames than decoded)."""
        if self.live or not self.frame_count or self.frames_read >= self.frame_count - 1:
            return ""
        return f"; the file stopped decoding after {self.frames_read} of {self.frame_count} frames (truncated?)"

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def fps(self) -> float:
        return float(self._cap.get(cv2.CAP_PROP_FPS)) if self._cap is not None else 0.0


class FolderSource:
    """The images of a folder in name order; unreadable files are skipped."""

    live = False
    fps = 0.0  # no natural rate

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = str(folder)
        self._files: list[Path] = []
        self._index = 0
        self.skipped: list[Path] = []

    def open(self) -> None:
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.folder}")
        self._index = 0

    def read(self) -> np.ndarray | None:
        while self._index < len(self._files):
            path = self._files[self._index]
            self._index += 1
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is not None:
                return image
            self.skipped.append(path)
        return None

    def end_note(self) -> str:
        if not self.skipped:
            return ""
        names = ", ".join(p.name for p in self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
        return f"; skipped {len(self.skipped)} unreadable file(s): {names}"

    def close(self) -> None:
        self._files = []


def open_source(spec: str, camera_size: tuple[int, int] | None = None) -> FrameSource:
    """A source from a --source value: camera index, folder, video file, URL or GStreamer pipeline."""
    if spec.isdigit():
        return VideoCaptureSource(int(spec), live=True, size=camera_size)
    if "://" in spec or "!" in spec:
        return VideoCaptureSource(spec, live=True)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        return VideoCaptureSource(str(path), live=False)
    raise SourceError(f"--source {spec}: no such file, folder or camera index; try --source FILE or --demo")


@dataclass(frozen=True)
class Frame:
    """A frame as the reader hands it over: sequence number, BGR image, capture time."""

    index: int
    image: np.ndarray
    captured_at: float


@dataclass(frozen=True)
class Backoff:
    """Delays between reopen attempts of a live source that dropped out."""

    first: float = 0.1
    factor: float = 2.0
    limit: float = 2.0
    attempts: int = 8

    def delays(self) -> list[float]:
        return [min(self.limit, self.first * self.factor**i) for i in range(self.attempts)]


class LatestFrameReader:
    """Reads a source on its own thread; `get` returns the newest frame not yet handed out."""

    def __init__(
        self,
        source: FrameSource,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    ) -> None:
        self.source = source
        self.backoff = backoff or Backoff()
        self._clock, self._sleep, self._log = clock, sleep, log
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._handed = -1
        self._ended = False
        self._stop = threading.Event()
        self.captured = 0
        self.dropped = 0
        self.bad_frames = 0
        self.reconnects = 0
        self.end_reason = ""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"capture:{source.name}", daemon=True)

    def __enter__(self) -> LatestFrameReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Open the source here, in the caller's thread, so a bad source fails fast with its own message."""
        if self._thread.is_alive():
            return
        self.source.open()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.source.close()

    def _finish(self, reason: str) -> None:
        with self._cond:
            self._ended = True
            self.end_reason = reason
            self._cond.notify_all()

    def _reopen(self) -> bool:
        self.source.close()
        for delay in self.backoff.delays():
            if self._stop.is_set():
                return False
            self._log(f"{self.source.name} dropped out; reopening in {delay:.1f} s")
            self._sleep(delay)
            try:
                self.source.open()
            except SourceError:
                continue
            self.reconnects += 1
            return True
        return False

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                raw = self.source.read()
                if raw is None:
                    if not self.source.live:
                        note = getattr(self.source, "end_note", lambda: "")()
                        self._finish("end of stream" + note)
                        return
                    if not self._reopen():
                        self._finish(f"{self.source.name} lost; try --source FILE or --demo")
                        return
                    continue
                try:
                    image = to_bgr(raw)
                except BadFrameError:
                    self.bad_frames += 1
                    continue
                stamp = self._clock()
                with self._cond:
                    if not self.source.live:
                        # files: wait until the consumer took the previous frame, drop nothing
                        while (
                            self._latest is not None and self._latest.index > self._handed and not self._stop.is_set()
                        ):
                            self._cond.wait(0.1)
                    elif self._latest is not None and self._latest.index > self._handed:
                        self.dropped += 1
                    self.captured += 1
                    self._latest = Frame(self.captured - 1, image, stamp)
                    self._cond.notify_all()
        except Exception as exc:  # the loop thread must report, not vanish
            self.error = exc
            self._finish(f"capture failed: {type(exc).__name__}: {exc}")

    def get(self, timeout: float | None = None) -> Frame | None:
        """The newest unseen frame; None once the source has ended (or on timeout)."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._latest is not None and self._latest.index > self._handed:
                    self._handed = self._latest.index
                    self._cond.notify_all()
                    if not self.source.live:  # a file frame waited for us; its clock starts now
                        return replace(self._latest, captured_at=self._clock())
                    return self._latest
                if self._ended or self._stop.is_set():
                    return None
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))
