"""Camera modes: what a presenter asks a webcam for, in the order drivers need, and what it gave.

Most USB webcams give 720p or 1080p at 30 FPS only as MJPG and fall back to a slow YUYV mode
otherwise; V4L2 drivers take the FOURCC first, then the size, then the rate (a size set before the
FOURCC is checked against the old format's modes and may be refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2


@dataclass(frozen=True)
class CameraMode:
    """A camera mode; None: leave that part as the driver has it."""

    size: tuple[int, int] | None = None  # width, height
    fps: float | None = None
    fourcc: str | None = None  # "MJPG", "YUYV", ...

    def asked(self) -> bool:
        return self.size is not None or self.fps is not None or self.fourcc is not None

    def describe(self) -> str:
        parts = []
        if self.size is not None:
            parts.append(f"{self.size[0]}x{self.size[1]}")
        if self.fps is not None:
            parts.append(f"{self.fps:g} FPS")
        if self.fourcc is not None:
            parts.append(self.fourcc)
        return " ".join(parts) or "the driver's default"


class Capture(Protocol):
    """The part of cv2.VideoCapture a mode needs (a fake one in the tests)."""

    def set(self, prop: int, value: float) -> bool: ...

    def get(self, prop: int) -> float: ...


def parse_size(text: str) -> tuple[int, int]:
    """ "1280x720" -> (1280, 720); ValueError with what to write otherwise."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise ValueError(f"{text}: width and height must be 16 to 8192")
    return width, height


def parse_fourcc(text: str) -> str:
    if len(text) != 4 or not text.isascii() or not text.isprintable():
        raise ValueError(f"{text!r} is not a FOURCC: four characters, e.g. MJPG or YUYV")
    return text.upper() if text.isalpha() else text


def fourcc_of(code: float) -> str:
    """A FOURCC code as text; "?" when the backend does not say (0, -1, or not letters)."""
    value = int(code)
    if value <= 0:
        return "?"
    text = "".join(chr((value >> 8 * i) & 0xFF) for i in range(4))
    return text if text.isascii() and text.isprintable() and text.strip("\0") else "?"


def apply_mode(capture: Capture, mode: CameraMode) -> CameraMode:
    """Ask for `mode` in the drivers' order (FOURCC, size, rate); return what the capture reports."""
    if mode.fourcc is not None:
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*mode.fourcc))
    if mode.size is not None:
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, mode.size[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, mode.size[1])
    if mode.fps is not None:
        capture.set(cv2.CAP_PROP_FPS, mode.fps)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    fourcc = fourcc_of(capture.get(cv2.CAP_PROP_FOURCC))
    return CameraMode(  # None: the backend does not report it (0, or no FOURCC), so nothing to compare
        size if min(size) > 0 else None, fps if fps > 0 else None, None if fourcc == "?" else fourcc
    )


def mismatch(name: str, asked: CameraMode, got: CameraMode) -> str | None:
    """One line when the camera gave something else than asked (None: it gave what was asked)."""
    wrong = (  # a part the backend does not report (None) is not a mismatch
        (asked.size is not None and got.size is not None and asked.size != got.size)
        or (asked.fps is not None and got.fps is not None and abs(asked.fps - got.fps) > 0.5)
        or (asked.fourcc is not None and got.fourcc is not None and asked.fourcc != got.fourcc)
    )
    if not wrong:
        return None
    return (
        f"{name}: asked for {asked.describe()}, the camera gives {got.describe()}; "
        "gradcam-live --list-cameras shows the modes it offers"
    )
