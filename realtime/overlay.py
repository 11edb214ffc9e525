"""Colour maps, blending and the heads-up display. Every function returns a new array."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from realtime.frames import Region

FONT = cv2.FONT_HERSHEY_SIMPLEX
DEFAULT_ALPHA = 0.4  # the seed's blend: frame 0.6, map 0.4


def colorize(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [h,w] map in [0,1] -> a JET heat image of `size` (width, height), BGR uint8."""
    clean = np.nan_to_num(np.asarray(cam, np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    # quantise the small map first, then upsample 8-bit: 3x cheaper than resizing floats at
    # 640x480, and within 2 levels of the seed's float resize
    levels = (np.clip(clean, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    up = cv2.resize(levels, size, interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.applyColorMap(up, cv2.COLORMAP_JET))


def blend(frame: np.ndarray, cam: np.ndarray, alpha: float = DEFAULT_ALPHA, region: Region | None = None) -> np.ndarray:
    """The frame with the map laid over `region` (the whole frame by default)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = frame.copy()
    region = region or Region(0, 0, frame.shape[1], frame.shape[0])
    view = out[region.y : region.y + region.height, region.x : region.x + region.width]
    heat = colorize(cam, (view.shape[1], view.shape[0]))
    cv2.addWeighted(view, 1.0 - alpha, heat, alpha, 0.0, dst=view)
    return out


@dataclass(frozen=True)
class Hud:
    """What the heads-up display says about the current frame."""

    label: str
    probability: float
    method: str
    top: Sequence[tuple[str, float]] = ()
    display_fps: float = 0.0
    model_ms: float = 0.0
    latency_ms: float = 0.0
    model_fps: float | None = None
    map_age: int | None = None
    notes: Sequence[str] = field(default_factory=tuple)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int]) -> None:
    # a 1-px drop shadow: a thicker black pass would advance wider and trail ghost letters
    cv2.putText(img, text, (org[0] + 1, org[1] + 1), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, color, 1, cv2.LINE_AA)


def hud_lines(hud: Hud) -> list[str]:
    """The status lines, also used by sinks that log instead of drawing."""
    rates = f"{hud.display_fps:4.1f} FPS  model {hud.model_ms:5.1f} ms  latency {hud.latency_ms:5.1f} ms"
    if hud.model_fps is not None:
        rates += f"  model {hud.model_fps:4.1f} FPS"
    if hud.map_age is not None:
        rates += f"  map age {hud.map_age}"
    title = f"{hud.label} {hud.probability * 100:.1f}%  [{hud.method}]"
    if not (hud.display_fps or hud.model_ms or hud.latency_ms):  # a still image: no rates to report
        return [title, *hud.notes]
    return [title, rates, *hud.notes]


def draw_hud(frame: np.ndarray, hud: Hud) -> np.ndarray:
    """The frame with class, method, rates and the top-k bars drawn on a copy."""
    out = frame.copy()
    height, width = out.shape[:2]
    scale = max(0.35, min(0.7, width / 1100))
    line = int(22 * scale / 0.5)
    lines = hud_lines(hud)
    status = lines[: len(lines) - len(hud.notes)]
    panel = out[: line * len(status) + 8, :]
    panel[:] = (panel * 0.45).astype(np.uint8)
    for i, text in enumerate(status):
        _text(out, text, (8, line * (i + 1)), scale, (255, 255, 255))
    for i, text in enumerate(hud.notes):
        _text(out, text, (8, line * (len(status) + i + 1)), scale, (0, 255, 255))
    bar_w = max(40, width // 5)
    for i, (name, prob) in enumerate(hud.top[:5]):
        y = height - (len(hud.top[:5]) - i) * (line + 2) - 4
        x = width - bar_w - 8
        cv2.rectangle(out, (x, y - line + 6), (x + bar_w, y + 2), (40, 40, 40), -1)
        cv2.rectangle(out, (x, y - line + 6), (x + int(bar_w * min(max(prob, 0.0), 1.0)), y + 2), (0, 200, 255), -1)
        _text(out, f"{name[:22]} {prob * 100:.0f}%", (max(2, x - int(bar_w * 1.6)), y), scale * 0.85, (255, 255, 255))
    return out


def tile(images: Sequence[np.ndarray], captions: Sequence[str] = ()) -> np.ndarray:
    """Images of one height side by side, each with an optional caption."""
    if not images:
        raise ValueError("nothing to tile")
    height = images[0].shape[0]
    parts = []
    for i, img in enumerate(images):
        part = img if img.shape[0] == height else cv2.resize(img, (int(img.shape[1] * height / img.shape[0]), height))
        part = part.copy()
        if i < len(captions):
            _text(part, captions[i], (8, height - 10), 0.5, (255, 255, 255))
        parts.append(part)
    return np.concatenate(parts, axis=1)
