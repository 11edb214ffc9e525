"""Where presented frames go: one interface, one call per frame.

Every output takes `write(shown)` for each presented frame and is a context manager
that finishes its files on exit. Outputs that also take input from the presenter
(the window's keys, the browser's buttons) answer `steer`; the actions that input asks for
(snapshot, record) come back to every output through `act`, with the frame that was on
screen when they came. The loop holds a plain list.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from realtime.calibration import INT8_WANTS, SAVE_EVERY
from realtime.capture import Frame
from realtime.controls import FULLSCREEN, HELP, KEYS, RECORD, SNAPSHOT, Controls, apply_key
from realtime.engine import CamResult
from realtime.files import write_image
from realtime.overlay import Hud, key_help
from realtime.panels import Stats
from realtime.video import SinkError, VideoRecorder, stderr

Log = Callable[[str], None]


@dataclass(frozen=True)
class Shown:
    """One presented frame, as every output receives it."""

    image: np.ndarray  # the drawn mosaic
    huds: tuple[Hud, ...]  # one per model panel, source by source
    stats: Stats
    results: tuple[CamResult, ...]  # one per model, a batch over the sources
    controls: Controls  # what the frame was drawn with
    frames: tuple[Frame | None, ...]  # the camera frames it was drawn on, one per source


AnyOutput = TypeVar("AnyOutput", bound="Output")


class Output:
    """The interface: write every presented frame; optionally steer the controls; close."""

    def write(self, shown: Shown) -> None:
        raise NotImplementedError

    def steer(self, controls: Controls, provides: frozenset[str]) -> tuple[Controls, tuple[str, ...]]:
        """New controls and actions from the presenter (`provides`: what every model's graph gives)."""
        return controls, ()

    def act(self, actions: tuple[str, ...], shown: Shown) -> None:
        """Carry out the presenter's actions (snapshot, record) on `shown`, the frame on screen when they came."""

    def close(self) -> None:
        """Finish files, close windows; safe to call twice."""

    def __enter__(self: AnyOutput) -> AnyOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # never swallows the exception that ended the block


def has_display() -> bool:
    """Whether an OpenCV window can open here (X11/Wayland on Linux; always elsewhere)."""
    if os.name != "posix" or os.uname().sysname == "Darwin":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def opencv_has_gui() -> bool:
    """Whether this OpenCV was built with a window backend (its build information's GUI line)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() != "NONE"
    return True


def headless_installed() -> bool:
    """Whether pip's window-less OpenCV wheel is installed (it shares the cv2 folder with opencv-python)."""
    from importlib import metadata

    try:
        metadata.distribution("opencv-python-headless")
    except metadata.PackageNotFoundError:
        return False
    return True


class Window(Output):
    """An OpenCV window; its keys steer the controls (see controls.KEYS)."""

    def __init__(self, title: str = "gradcam-live", layers: int = 1, fullscreen: bool = False) -> None:
        if not has_display():
            raise SinkError("no display here: use --no-window (with --record FILE or --serve PORT)")
        self.title, self.key, self.open = title, -1, True
        self.layers = layers  # the l key cycles through this many explained layers
        self.fullscreen, self.help = fullscreen, False  # the window's own state (f, h): nothing else sees it
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            if not opencv_has_gui():  # e.g. pytorch-grad-cam's opencv-python-headless took the GUI's place
                cause = "opencv-python-headless is installed" if headless_installed() else "built without one"
                raise SinkError(
                    f"this OpenCV has no GUI ({cause}): pip install --force-reinstall opencv-python, or use --no-window"
                ) from exc
            raise SinkError(f"cannot open a window ({' '.join(str(exc).split())[:160]}); use --no-window") from exc
        self.shown = 0  # frames shown: full screen is applied once the window has its first picture

    def _apply_fullscreen(self) -> None:
        mode = cv2.WINDOW_FULLSCREEN if self.fullscreen else cv2.WINDOW_NORMAL
        cv2.setWindowProperty(self.title, cv2.WND_PROP_FULLSCREEN, mode)

    def write(self, shown: Shown) -> None:
        image = key_help(shown.image, KEYS) if self.help else shown.image  # the window's only: not recorded
        cv2.imshow(self.title, image)
        self.shown += 1
        if self.shown == 1 and self.fullscreen:  # Qt sizes the window at the first imshow, undoing it before
            self._apply_fullscreen()
        self.key = int(cv2.waitKey(1))

    def act(self, actions: tuple[str, ...], shown: Shown) -> None:
        if FULLSCREEN in actions:
            self.fullscreen = not self.fullscreen
            self._apply_fullscreen()
        if HELP in actions:
            self.help = not self.help

    def steer(self, controls: Controls, provides: frozenset[str]) -> tuple[Controls, tuple[str, ...]]:
        controls, action = apply_key(controls, self.key, provides, self.layers)
        self.key = -1
        return controls, (action,) if action else ()

    def close(self) -> None:
        if self.open:
            cv2.destroyWindow(self.title)
            self.open = False


class Recorder(Output):
    """The --record file, and recordings the r key starts and stops; writes nothing while off.

    A recording started with the r key that cannot be written stops with a message in
    `failure`, and the show goes on; the --record file was checked before the start.
    """

    def __init__(self, path: Path | None, folder: Path, fps: float = 15.0, log: Log = stderr) -> None:
        """`fps`: the playback rate of every file it writes (session.record_rate), known before it is built."""
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


def save_snapshot(frame: np.ndarray, folder: Path, prefix: str = "gradcam") -> Path:
    """Write a PNG with a timestamped name; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}_{time.perf_counter_ns() % 1000000:06d}.png"
    if not write_image(path, frame):
        raise SinkError(f"cannot write snapshot {path}")
    return path


class Snapshots(Output):
    """The s key: the presented frame as a PNG; a full disk is reported and the show goes on."""

    def __init__(self, folder: Path, log: Log = stderr) -> None:
        self.folder, self.log = folder, log
        self.saved: list[Path] = []

    def write(self, shown: Shown) -> None:
        """Nothing on every frame: a snapshot is taken in `act`, of the frame on screen when s came."""

    def act(self, actions: tuple[str, ...], shown: Shown) -> None:
        if SNAPSHOT not in actions:
            return
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
