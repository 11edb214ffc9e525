"""Colour maps, blending and the heads-up display. Every function returns a new array."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from realtime.frames import Region

FONT = cv2.FONT_HERSHEY_SIMPLEX
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


@dataclass(frozen=True)
class Hud:
    """What the caption under a panel says; a figure not measured yet (0) is left out."""

    label: str
    probability: float | None  # None: no class to report (a lost source)
    method: str
    top: Sequence[tuple[str, float]] = ()
    display_fps: float = 0.0
    model_ms: float = 0.0
    latency_ms: float = 0.0
    model_fps: float | None = None
    map_age: int | None = None
    notes: Sequence[str] = field(default_factory=tuple)


def thickness(scale: float) -> int:
    """Stroke width for a font scale: thin strokes vanish on a projector once the text is large."""
    return max(1, int(scale * 1.4 + 0.3))


def draw_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int]) -> None:
    """Text with a drop shadow of its own stroke width, drawn into `img` (the caller's own new array);
    a thicker black pass would advance wider and trail ghost letters."""
    stroke = thickness(scale)
    cv2.putText(img, text, (org[0] + stroke, org[1] + stroke), FONT, scale, (0, 0, 0), stroke, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, color, stroke, cv2.LINE_AA)


def hud_lines(hud: Hud) -> list[str]:
    """The caption's text lines, also used by outputs that log instead of drawing."""
    figures = [
        f"{hud.display_fps:.1f} FPS" if hud.display_fps > 0 else "",
        f"model {hud.model_ms:.1f} ms" if hud.model_ms > 0 else "",
        f"latency {hud.latency_ms:.0f} ms" if hud.latency_ms > 0 else "",
        f"model {hud.model_fps:.1f} FPS" if hud.model_fps else "",
        f"map age {hud.map_age}" if hud.map_age else "",
    ]
    share = "" if hud.probability is None else f" {hud.probability * 100:.1f}%"
    title = f"{hud.label}{share}  [{hud.method}]"
    rates = "  ".join(f for f in figures if f)
    return [title, *([rates] if rates else []), *hud.notes]


def _scale(width: int) -> tuple[float, int]:
    scale = max(0.35, min(0.6, width / 1100))
    return scale, int(22 * scale / 0.5)


@functools.lru_cache(maxsize=16)
def colour_scale(width: int, height: int) -> np.ndarray:
    """A small JET bar from cold (left) to hot (right), for the caption: made once per size (read-only),
    as every panel of every frame draws the same one."""
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8), (height, 1))
    bar = np.asarray(cv2.applyColorMap(ramp, cv2.COLORMAP_JET))
    bar.setflags(write=False)
    return bar


def tile(images: Sequence[np.ndarray], captions: Sequence[str] = ()) -> np.ndarray:
    """Images side by side (scaled to the first one's height), each with an optional caption."""
    if not images:
        raise ValueError("nothing to tile")
    height = images[0].shape[0]
    parts = []
    for i, img in enumerate(images):
        part = img if img.shape[0] == height else cv2.resize(img, (int(img.shape[1] * height / img.shape[0]), height))
        if i < len(captions):  # drawn on a copy; without a caption, concatenate copies anyway
            part = part.copy()
            draw_text(part, captions[i], (8, 18), 0.5, (255, 255, 255))
        parts.append(part)
    return np.concatenate(parts, axis=1)


def stack(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Rows of panels one above the other, padded to the widest."""
    width = max(r.shape[1] for r in rows)
    padded = [
        r if r.shape[1] == width else cv2.copyMakeBorder(r, 0, 0, 0, width - r.shape[1], cv2.BORDER_CONSTANT)
        for r in rows
    ]
    return np.concatenate(padded, axis=0)


def lost_panel(size: tuple[int, int], name: str, note: str) -> np.ndarray:
    """What a source that dropped out shows in the mosaic while it reconnects."""
    width, height = size
    image = np.full((height, width, 3), 40, np.uint8)
    scale, line = _scale(width)
    draw_text(image, f"{name}: lost", (12, height // 2 - line // 2), scale * 1.3, (0, 200, 255))
    draw_text(image, note, (12, height // 2 + line), scale, (220, 220, 220))
    return image


def key_help(frame: np.ndarray, keys: Mapping[str, str]) -> np.ndarray:
    """The frame with the key list over its top left, on a dark box: a new array. The text is sized to
    the frame's height (3% a line), so it reads from the back of a room on a projector."""
    out = frame.copy()
    height = frame.shape[0]
    scale = max(0.4, height * 0.03 / 22)  # FONT's cap height at scale 1 is about 22 px
    line = int(height * 0.045)
    lines = ["keys (h hides this)", *(f"{key:>7}  {what}" for key, what in keys.items())]
    widths = [cv2.getTextSize(text, FONT, scale, 1)[0][0] for text in lines]
    box_w = min(frame.shape[1], max(widths) + 2 * line)
    box_h = min(height, line * (len(lines) + 1))
    region = out[:box_h, :box_w]
    region[:] = (region * 0.25).astype(np.uint8)
    for i, text in enumerate(lines):
        draw_text(out, text, (line, line * (i + 1)), scale, (255, 255, 255) if i else (0, 220, 255))
    return out
