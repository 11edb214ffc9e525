"""A frame as the sources hand it over, and frame hygiene. Pure array code, no I/O.

Cameras and files hand over grey, BGRA, 16-bit or odd-sized frames; all of
them become 3-channel uint8 BGR here, or a clear BadFrameError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np


class BadFrameError(ValueError):
    """A frame that cannot be turned into BGR uint8."""


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """Grey, BGRA, 16-bit and float frames -> contiguous uint8 BGR [H,W,3]."""
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        raise BadFrameError("empty frame")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise BadFrameError(f"frame of shape {frame.shape} is neither grey, BGR nor BGRA")
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating):
            data = np.nan_to_num(frame.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
            scale = 255.0 if float(data.max(initial=0.0)) <= 1.0 else 1.0
            frame = np.clip(data * scale, 0, 255).astype(np.uint8)
        elif frame.dtype == np.uint16:
            frame = (frame >> 8).astype(np.uint8)
        else:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)


@dataclass(frozen=True)
class Frame:
    """A frame as the reader hands it over: sequence number, BGR image, capture time."""

    index: int
    image: np.ndarray
    captured_at: float


def mirrored(frames: Sequence[Frame | None], on: bool) -> tuple[Frame | None, ...]:
    """The frames flipped left-right (new arrays; the reader's own are untouched), or as they are."""
    if not on:
        return tuple(frames)
    return tuple(None if f is None else replace(f, image=cv2.flip(f.image, 1)) for f in frames)
