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


LETTERBOX = "letterbox"  # how detectors take frames (the graph's metadata says so): the aspect kept, grey borders
LETTERBOX_GREY = 114  # what Ultralytics pads with


@dataclass(frozen=True)
class Letterbox:
    """How a frame was letterboxed into a model's input: its picture scaled by (scale_x, scale_y) and placed
    at (left, top), `width` x `height` model pixels, grey around it."""

    scale_x: float
    scale_y: float
    left: int
    top: int
    width: int
    height: int
    model_size: tuple[int, int]  # the model input's (height, width)

    def to_frame(self, boxes: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
        """x1, y1, x2, y2 in model pixels [..., 4] -> in frame pixels, clipped to the frame (a new array)."""
        out = np.array(boxes, dtype=np.float32, copy=True)
        out[..., 0::2] = (out[..., 0::2] - self.left) / self.scale_x
        out[..., 1::2] = (out[..., 1::2] - self.top) / self.scale_y
        out[..., 0::2] = out[..., 0::2].clip(0, frame_shape[1])
        out[..., 1::2] = out[..., 1::2].clip(0, frame_shape[0])
        return out

    def picture_of(self, grid: np.ndarray) -> np.ndarray:
        """The part of a map [..., h, w] that covers the model input and lies over the picture (not the
        grey borders), as a view: the map to lay over the whole frame."""
        h, w = grid.shape[-2:]
        sy, sx = h / self.model_size[0], w / self.model_size[1]
        y0, x0 = int(np.floor(self.top * sy)), int(np.floor(self.left * sx))
        y1 = max(y0 + 1, int(np.ceil((self.top + self.height) * sy)))
        x1 = max(x0 + 1, int(np.ceil((self.left + self.width) * sx)))
        return grid[..., y0:y1, x0:x1]


def letterbox(frame: np.ndarray, model_size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """The frame scaled to fit `model_size` (height, width) with its aspect ratio kept and grey borders, as
    Ultralytics' LetterBox does it (same rounding, bilinear resize, centred), and how it was placed."""
    height, width = frame.shape[:2]
    model_h, model_w = model_size
    ratio = min(model_h / height, model_w / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    dw, dh = (model_w - new_w) / 2, (model_h - new_h) / 2
    top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    image = frame if (width, height) == (new_w, new_h) else cv2.resize(frame, (new_w, new_h),
                                                                       interpolation=cv2.INTER_LINEAR)  # fmt: skip
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(LETTERBOX_GREY,) * 3)
    return padded, Letterbox(new_w / width, new_h / height, left, top, new_w, new_h, model_size)


Placement = Region | Letterbox  # how a frame was fitted to a model: a region resized, or the whole letterboxed


def placed(frame: np.ndarray, model_size: tuple[int, int], mode: str) -> tuple[np.ndarray, Placement]:
    """The model's input from `frame`, and how it was made: `mode` one of FIT_MODES, or "letterbox"."""
    if mode == LETTERBOX:
        return letterbox(frame, model_size)
    return fit(frame, model_size, mode), model_region(frame.shape, model_size, mode)
