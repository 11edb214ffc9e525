"""Recordings: the --record file and the r key's, as video files that play, encoded off the loop's thread."""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from realtime.files import discard, finish, hold, partial_path, release, remove_stale
from realtime.outputs.base import Log, Output, Shown, SinkError, stderr
from realtime.outputs.controls import RECORD
from realtime.outputs.encoders import Encoder, EncoderError, codec_note, open_encoder


class VideoRecorder:
    """A video file written on its own thread, under a partial name moved into place on close.

    It opens on the first frame, so its size follows what is drawn; a recording cut short by
    a kill never replaces a good one with a broken file. The loop only hands frames over (it waits
    only if 8 are queued); the encoder's thread runs at a lower priority, so the loop's threads win a
    busy core and the encoder takes the idle time between frames.
    """

    def __init__(self, path: Path, fps: float = 15.0, log: Callable[[str], None] = stderr) -> None:
        self.path, self.fps, self.log = path, fps, log
        self.partial = partial_path(path)
        self.frames = 0
        self.codec = ""  # the codec actually written, e.g. "VP8"
        self._size: tuple[int, int] | None = None
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=8)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock: int | None = None

    def _open(self, size: tuple[int, int]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot write video {self.path}: {exc.strerror or exc}") from exc
        remove_stale(self.path.parent)
        try:
            self._lock = hold(self.partial)  # before OpenCV opens it: no other process's cleanup takes it
            encoder = open_encoder(self.partial, self.fps, size)
        except (OSError, EncoderError) as exc:
            release(self._lock)
            self._lock = None
            discard(self.partial)
            raise SinkError(f"cannot write video {self.path}: {getattr(exc, 'strerror', None) or exc}") from exc
        self.codec = encoder.codec.name
        note = codec_note(self.path, encoder.codec)
        if note:
            self.log(note)
        self._size = size
        self._thread = threading.Thread(target=self._encode, args=(encoder,), name="recorder", daemon=True)
        self._thread.start()

    def _encode(self, encoder: Encoder) -> None:
        lower_priority()
        try:
            while (frame := self._queue.get()) is not None:
                encoder.write(frame)
        except BaseException as exc:  # reported by the next write or close
            self._error = exc
            while self._queue.get() is not None:  # keep draining: a full queue must never block the loop
                pass
        finally:
            try:
                encoder.close()
            except Exception as exc:  # a full disk can surface only when the container is finished
                self._error = self._error or exc

    def write(self, frame: np.ndarray) -> None:
        size = (frame.shape[1], frame.shape[0])
        if self._thread is None:
            self._open(size)
        if self._error is not None:
            raise SinkError(f"cannot write video {self.path}: {self._error}")
        if size != self._size:
            assert self._size is not None
            frame = cv2.resize(frame, self._size)
        self._queue.put(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file, read it back, and only then move it into place (a recording with no frames
        leaves nothing; one the disk could not hold leaves the previous file as it was)."""
        problem = None
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
            if self._error is not None:  # the encoder failed (a full disk: while finishing the container)
                problem = f"the encoder stopped ({self._error})"
            elif self.frames:
                problem = unreadable(self.partial, self.frames)
                if problem is not None and short_of_resources():  # the check could not run: not the file's fault
                    self.log(f"gradcam-live: {self.path}: kept without reading it back ({problem}, but the process "
                             "is out of file descriptors or memory)")  # fmt: skip
                    problem = None
                if problem is None:
                    finish(self.partial, self.path)
        discard(self.partial)
        release(self._lock)
        self._lock = None
        if problem is not None:
            kept = f"; the previous {self.path.name} is kept" if self.path.exists() else ""
            raise SinkError(f"recording {self.path} failed: {problem}{kept}")


def lower_priority(step: int = 10) -> None:
    """Nice the calling thread (Linux: a thread is a task with its own niceness); elsewhere nothing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # not allowed, or not Linux after all
            task = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, task, min(19, os.getpriority(os.PRIO_PROCESS, task) + step))


def short_of_resources(spare: int = 16) -> bool:
    """Whether this process cannot open `spare` more files now (EMFILE, ENFILE, ENOMEM): a read-back that failed
    then says nothing about the recording, which must not be deleted for it."""
    opened: list[int] = []
    try:
        for _ in range(spare):
            opened.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM)
    finally:
        for fd in opened:
            os.close(fd)
    return False


def unreadable(path: Path, frames: int) -> str | None:
    """Why the finished file at `path` does not hold the `frames` written (None: it does). OpenCV's writer
    does not report a full disk; the file read back does."""
    try:
        size = path.stat().st_size
        free = shutil.disk_usage(path.parent).free
    except OSError as exc:
        return f"the file is gone ({exc.strerror})"
    hint = f" (is the disk full? {free / 2**20:.0f} MB free)"
    if size == 0:
        return "nothing reached the file" + hint
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return "the file cannot be read back" + hint
        counted = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if counted <= 0 or counted > frames:  # a container without an index: count by decoding
            counted = 0
            while counted < frames and capture.grab():
                counted += 1
    finally:
        capture.release()
    return None if counted >= frames else f"only {counted} of {frames} frames reached the file" + hint


class Recorder(Output):
    """The --record file, and recordings the r key starts and stops; writes nothing while off.

    A recording started with the r key that cannot be written stops with a message in
    `failure`, and the show goes on; the --record file was checked before the start.
    """

    def __init__(self, path: Path | None, folder: Path, fps: float = 15.0, log: Log = stderr) -> None:
        """`fps`: the playback rate of every file it writes (live.start.record_rate), known before it is built."""
        self.folder, self.fps, self.log = folder, fps, log
        self.recorder: VideoRecorder | None = VideoRecorder(path, fps, log) if path else None
        self.toggled = False
        self.failure: str | None = None

    def toggle(self) -> str:
        if self.recorder is not None:
            self.close()
            return "recording stopped"
        path = self.folder / f"gradcam_{time.strftime('%Y%m%d_%H%M%S')}.mp4"
        self.recorder, self.toggled, self.failure = VideoRecorder(path, self.fps, self.log), True, None
        return f"recording to {path}"

    def write(self, shown: Shown) -> None:
        if self.recorder is None:
            return
        try:
            self.recorder.write(shown.image)
        except SinkError as exc:
            if not self.toggled:
                raise
            self.failure = str(exc)
            self.close()
            self.log(f"record failed: {exc}")

    def act(self, actions: tuple[str, ...], shown: Shown) -> None:
        """The r key: a recording starts with the frame on screen, or stops after it (it was written)."""
        if RECORD not in actions:
            return
        self.log(self.toggle())
        if self.recorder is not None:
            self.write(shown)

    def close(self) -> None:
        """Finish the recording; one the disk could not hold is an error for --record, a message for r."""
        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            try:
                recorder.close()
            except SinkError as exc:
                if not self.toggled:
                    raise
                self.failure = str(exc)
                self.log(f"record failed: {exc}")
