"""The OpenCV window: shows every presented frame, and its keys steer the controls."""

from __future__ import annotations

import os

import cv2

from realtime.engines.result import DetectResult
from realtime.outputs.base import Output, Shown, SinkError
from realtime.outputs.controls import FULLSCREEN, HELP, KEYS, Controls, apply_key
from realtime.outputs.screen import screen_size, window_size
from realtime.sources.fitting import Letterbox
from realtime.view.boxes import box_at, frame_boxes
from realtime.view.text import key_help


def box_under(shown: Shown, x: int, y: int) -> int | None:
    """The rank of the detector's box under (x, y) of the presented picture (a mosaic of one frame-sized panel
    per model and source), or None: not a detector's panel, not over its frame, or over no box."""
    frames = [f for f in shown.frames if f is not None]
    if not frames or not shown.placements:
        return None
    height, width = frames[0].image.shape[:2]
    row, column = int(y // (shown.image.shape[0] / len(shown.frames))), x // width
    y -= int(row * shown.image.shape[0] / len(shown.frames))
    frame = shown.frames[row] if row < len(shown.frames) else None
    if column >= len(shown.results) or frame is None or y >= height:
        return None
    result, placement = shown.results[column], shown.placements[column][row]
    if not isinstance(result, DetectResult) or not isinstance(placement, Letterbox):
        return None
    index = sum(1 for f in shown.frames[:row] if f is not None)
    return box_at(frame_boxes(result, index, placement, frame.image.shape), x - column * width, y)


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
    """An OpenCV window; its keys steer the controls (see outputs.controls.KEYS)."""

    def __init__(
        self, title: str = "gradcam-live", layers: int = 1, fullscreen: bool = False,
        size: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        """`size`: (width, height) of the first frame's window; None: about 80% of the screen (outputs.screen)."""
        if not has_display():
            raise SinkError("no display here: use --no-window (with --record FILE or --serve PORT)")
        self.title, self.key, self.open = title, -1, True
        self.layers = layers  # the l key cycles through this many explained layers
        self.fullscreen, self.help = fullscreen, False  # the window's own state (f, h): nothing else sees it
        try:
            # resizable, the picture's aspect kept, no Qt toolbar (its buttons took room and did nothing useful)
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as exc:
            if not opencv_has_gui():  # e.g. pytorch-grad-cam's opencv-python-headless took the GUI's place
                cause = "opencv-python-headless is installed" if headless_installed() else "built without one"
                raise SinkError(
                    f"this OpenCV has no GUI ({cause}): pip install --force-reinstall opencv-python, or use --no-window"
                ) from exc
            raise SinkError(f"cannot open a window ({' '.join(str(exc).split())[:160]}); use --no-window") from exc
        self.size = size
        self.shown = 0  # frames shown: full screen is applied once the window has its first picture
        self.last: Shown | None = None
        self.click: tuple[int, int] | None = None  # where the left button went down last, in picture pixels
        cv2.setMouseCallback(title, self._mouse)

    def _mouse(self, event: int, x: int, y: int, flags: int, param: object) -> None:
        if event == cv2.EVENT_LBUTTONDOWN:
            self.click = (x, y)

    def _apply_fullscreen(self) -> None:
        mode = cv2.WINDOW_FULLSCREEN if self.fullscreen else cv2.WINDOW_NORMAL
        cv2.setWindowProperty(self.title, cv2.WND_PROP_FULLSCREEN, mode)

    def write(self, shown: Shown) -> None:
        image = key_help(shown.image, KEYS) if self.help else shown.image  # the window's only: not recorded
        cv2.imshow(self.title, image)
        self.shown += 1
        self.last = shown
        if self.shown == 1:  # Qt sizes the window at the first imshow, undoing anything set before
            screen = screen_size()
            wanted = self.size or window_size(image.shape[:2], screen)
            if wanted is not None:
                cv2.resizeWindow(self.title, *wanted)
                if screen is not None:  # centred: a window manager may place it half off the screen
                    left, top = max(0, (screen[0] - wanted[0]) // 2), max(0, (screen[1] - wanted[1]) // 2)
                    cv2.moveWindow(self.title, left, top)
            if self.fullscreen:
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
        if self.click is not None and self.last is not None:
            rank = box_under(self.last, *self.click)
            if rank is not None:
                controls = controls.asking(box=rank, class_name=None, class_id=None)
        self.click = None
        return controls, (action,) if action else ()

    def close(self) -> None:
        if self.open:
            cv2.destroyWindow(self.title)
            self.open = False
