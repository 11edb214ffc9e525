"""Stills: the s key's snapshots, and --save-frames' camera frames for int8 calibration."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from realtime.contract import INT8_WANTS, SAVE_EVERY
from realtime.files import write_image
from realtime.outputs.base import Log, Output, Shown, SinkError, stderr
from realtime.outputs.controls import SNAPSHOT


def save_snapshot(frame: np.ndarray, folder: Path, prefix: str = "gradcam") -> Path:
    """Write a PNG with a timestamped name; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}_{time.perf_counter_ns() % 1000000:06d}.png"
    if not write_image(path, frame):
        raise SinkError(f"cannot write snapshot {path}")
    return path


SNAPSHOT_EVERY_S = 0.5  # at most two snapshots a second, however fast the key or the browser asks
MAX_SNAPSHOTS = 1000  # per run: a browser left asking cannot fill the disk


class Snapshots(Output):
    """The s key: the presented frame as a PNG; a full disk is reported and the show goes on. Writes are
    limited (SNAPSHOT_EVERY_S, MAX_SNAPSHOTS): a browser view's client may ask for one every frame."""

    def __init__(self, folder: Path, log: Log = stderr, clock: Callable[[], float] = time.monotonic) -> None:
        self.folder, self.log, self.clock = folder, log, clock
        self.saved: list[Path] = []
        self._last = -SNAPSHOT_EVERY_S
        self._said_full = False

    def write(self, shown: Shown) -> None:
        """Nothing on every frame: a snapshot is taken in `act`, of the frame on screen when s came."""

    def act(self, actions: tuple[str, ...], shown: Shown) -> None:
        if SNAPSHOT not in actions or self.clock() - self._last < SNAPSHOT_EVERY_S:
            return
        if len(self.saved) >= MAX_SNAPSHOTS:
            if not self._said_full:
                self.log(f"snapshots: {MAX_SNAPSHOTS} taken this run, no more (move them and start again)")
                self._said_full = True
            return
        self._last = self.clock()
        try:
            self.saved.append(save_snapshot(shown.image, self.folder))
            self.log(f"snapshot: {self.saved[-1]}")
        except (SinkError, OSError) as exc:
            self.log(f"snapshot failed: {exc}")


class FrameSaver(Output):
    """Keeps every n-th camera frame of each source as a JPEG (calibration data for gradcam-export --int8):
    neighbouring frames are nearly the same picture, and calibration wants variety."""

    def __init__(self, folder: Path, every: int = SAVE_EVERY, limit: int = 200, log: Log = stderr) -> None:
        self.folder, self.every, self.limit, self.log = folder, every, limit, log
        self.seen = self.saved = 0
        self.failure: str | None = None  # why saving stopped (a full disk, the folder gone); the show goes on

    def write(self, shown: Shown) -> None:
        self.seen += 1
        if self.failure or self.saved >= self.limit or (self.seen - 1) % self.every:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for frame in shown.frames:
                if frame is not None and self.saved < self.limit:
                    if not write_image(self.folder / f"frame_{self.saved:05d}.jpg", frame.image):
                        raise SinkError("a frame could not be written (is the disk full?)")
                    self.saved += 1
        except (SinkError, OSError) as exc:
            self.failure = str(exc)
            self.log(f"--save-frames stopped after {self.saved} frames in {self.folder}: {exc}")

    def report(self) -> str:
        """How many frames were kept, and why that many; what to do when int8 wants more."""
        capped = f", at most {self.limit}" if self.saved >= self.limit else ""
        why = f"every {self.every}th of {self.seen} shown{capped}"
        line = f"kept {self.saved} frames in {self.folder} ({why})"
        if self.saved < INT8_WANTS:
            more = INT8_WANTS * self.every
            return f"{line}; gradcam-export --int8 wants {INT8_WANTS}: run longer (--max-frames {more})"
        return f"{line}: gradcam-export --int8 --calibration {self.folder}"
