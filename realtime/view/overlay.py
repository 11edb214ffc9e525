"""The map laid over the frame, in one of two styles. Every function returns a new array."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from realtime.sources.fitting import Region

DEFAULT_ALPHA = 0.4  # the seed's blend: frame 0.6, map 0.4


STYLES = {
    "heat": "the map's opacity follows its value: cold areas stay clear, hot ones glow",
    "tint": "the seed's blend: the JET image at one opacity over the whole frame",
}


DEFAULT_STYLE = "heat"


HEAT_PEAK = 1.5  # heat: opacity at the map's peak, as a multiple of alpha (0.4 -> 0.6)


def _levels(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [h,w] map in [0,1] -> uint8 levels at `size` (width, height).

    Quantised before upsampling: 3x cheaper than resizing floats at 640x480, and within
    2 levels of the seed's float resize.
    """
    clean = np.nan_to_num(np.asarray(cam, np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    levels = (np.clip(clean, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.asarray(cv2.resize(levels, size, interpolation=cv2.INTER_LINEAR))


def blend(
    frame: np.ndarray,
    cam: np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    region: Region | None = None,
    style: str = DEFAULT_STYLE,
) -> np.ndarray:
    """The frame with the map laid over `region` (the whole frame by default), in one of STYLES."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if style not in STYLES:
        raise ValueError(f"overlay style {style!r}: choose one of {', '.join(STYLES)}")
    out = frame.copy()
    region = region or Region(0, 0, frame.shape[1], frame.shape[0])
    view = out[region.y : region.y + region.height, region.x : region.x + region.width]
    levels = _levels(cam, (view.shape[1], view.shape[0]))
    if style == "tint":
        cv2.addWeighted(view, 1.0 - alpha, cv2.applyColorMap(levels, cv2.COLORMAP_JET), alpha, 0.0, dst=view)
        return out
    hot_lut, keep_lut = _heat_tables(round(min(1.0, HEAT_PEAK * alpha) * 255))
    # per level: the JET colour already weighted, and how much of the frame stays; two table lookups
    # and one 8-bit multiply instead of float blending (6x faster at 640x480)
    keep = cv2.applyColorMap(levels, keep_lut)
    cv2.add(cv2.multiply(view, keep, scale=1.0 / 255.0), cv2.applyColorMap(levels, hot_lut), dst=view)
    return out


@functools.cache
def _heat_tables(peak: int) -> tuple[np.ndarray, np.ndarray]:
    """For each map level: JET x opacity, and 255 x (1 - opacity), as 256x1x3 colour maps."""
    level = np.arange(256, dtype=np.float32)
    opacity = level / 255.0 * (peak / 255.0)
    jet = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_JET).astype(np.float32)
    hot = np.rint(jet * opacity.reshape(256, 1, 1)).astype(np.uint8)
    keep = np.repeat(np.rint(255.0 * (1.0 - opacity)).reshape(256, 1, 1), 3, axis=2).astype(np.uint8)
    return hot, keep
