"""The caption band under a panel, laid out first and drawn second, so its boxes can be checked.

Left column: the class, method, rates and notes, and the colour scale beneath them; right column: the
top classes with their bars. Text is sized to the panel (readable on a projector) and shortened with
"..." to fit its column, so nothing overlaps or leaves the band at any width.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from realtime.view.hud import Hud, hud_lines
from realtime.view.text import FONT, LINE_PER_SCALE, draw_text, text_scale, thickness

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
Colour = tuple[int, int, int]
BAND_GREY = 24
MARGIN = 8


@functools.lru_cache(maxsize=16)
def colour_scale(width: int, height: int) -> np.ndarray:
    """A small JET bar from cold (left) to hot (right), for the caption: made once per size (read-only),
    as every panel of every frame draws the same one."""
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8), (height, 1))
    bar = np.asarray(cv2.applyColorMap(ramp, cv2.COLORMAP_JET))
    bar.setflags(write=False)
    return bar


@dataclass(frozen=True)
class TextBox:
    text: str
    x: int  # left
    y: int  # baseline
    scale: float
    colour: Colour

    def box(self) -> Box:
        """What the text covers, its drop shadow and descenders included."""
        stroke = thickness(self.scale)
        (w, h), base = cv2.getTextSize(self.text, FONT, self.scale, stroke)
        return self.x, self.y - h - stroke, self.x + w + 2 * stroke, self.y + base + stroke


@dataclass(frozen=True)
class CaptionLayout:
    width: int
    height: int
    texts: tuple[TextBox, ...]
    rects: tuple[tuple[Box, Colour], ...]  # filled rectangles: the bars
    ramp: Box | None  # where the colour scale goes

    def boxes(self) -> list[Box]:
        return [t.box() for t in self.texts] + [r for r, _ in self.rects[0::2]] + ([self.ramp] if self.ramp else [])


def shorten(text: str, scale: float, room: int) -> str:
    """`text`, shortened with "..." until it is at most `room` px wide ("" when not even that fits)."""
    stroke = thickness(scale)

    def wide(t: str) -> int:
        return int(cv2.getTextSize(t, FONT, scale, stroke)[0][0]) + 2 * stroke

    if wide(text) <= room:
        return text
    low, high = 0, len(text) - 1  # the longest prefix that fits with "...": a binary search (few measures)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if wide(text[:middle] + "...") <= room else (low, middle - 1)
    return text[:low] + "..." if low > 0 else ""


def caption_layout(width: int, hud: Hud) -> CaptionLayout:
    scale = text_scale(width)
    line = int(LINE_PER_SCALE * scale)
    lines = hud_lines(hud)
    status = lines[: len(lines) - len(hud.notes)]
    top = list(hud.top[:3])
    split = int(width * (0.6 if top else 1.0))  # the left column's right edge
    left_room = split - 2 * MARGIN
    texts: list[TextBox] = []
    colours = [(255, 255, 255)] * len(status) + [(0, 255, 255)] * len(hud.notes)
    for i, (text, colour) in enumerate(zip(lines, colours, strict=True)):
        shown = shorten(text, scale, left_room)
        if shown:
            texts.append(TextBox(shown, MARGIN, line * (i + 1), scale, colour))
    y = line * (len(lines) + 1)  # the colour-scale row
    small = scale * 0.8
    low, high = shorten("low", small, left_room), "high"
    low_w = TextBox(low, 0, 0, small, (0, 0, 0)).box()[2] if low else 0
    high_w = TextBox(high, 0, 0, small, (0, 0, 0)).box()[2]
    ramp_w = min(int(left_room * 0.5), max(0, left_room - low_w - high_w - 2 * MARGIN))
    ramp: Box | None = None
    if low and ramp_w >= 8:
        texts.append(TextBox(low, MARGIN, y, small, (200, 200, 200)))
        x0 = MARGIN + low_w + MARGIN // 2
        ramp = (x0, y - int(line * 0.55), x0 + ramp_w, y - int(line * 0.05))
        texts.append(TextBox(high, x0 + ramp_w + MARGIN // 2, y, small, (200, 200, 200)))
    rects: list[tuple[Box, Colour]] = []
    right_room = width - split - MARGIN
    bar_w = max(8, int(right_room * 0.35))
    bar_x = width - MARGIN - bar_w
    label = scale * 0.85
    for i, (name, prob) in enumerate(top):
        y = line * (i + 1)
        bar = (bar_x, y - int(line * 0.6), bar_x + bar_w, y)
        filled = (bar_x, bar[1], bar_x + int(bar_w * min(max(prob, 0.0), 1.0)), y)
        rects += [(bar, (60, 60, 60)), (filled, (0, 200, 255))]
        shown = shorten(f"{name} {prob * 100:.0f}%", label, bar_x - split - MARGIN)
        if shown:
            texts.append(TextBox(shown, split, y, label, (255, 255, 255)))
    rows = max(len(lines) + 1, len(top), 3)
    return CaptionLayout(width, rows * line + int(line * 0.4), tuple(texts), tuple(rects), ramp)


def render(layout: CaptionLayout) -> np.ndarray:
    band = np.full((layout.height, layout.width, 3), BAND_GREY, np.uint8)
    for (x0, y0, x1, y1), colour in layout.rects:
        if x1 > x0:
            cv2.rectangle(band, (x0, y0), (x1 - 1, y1 - 1), colour, -1)
    if layout.ramp is not None:
        x0, y0, x1, y1 = layout.ramp
        band[y0:y1, x0:x1] = colour_scale(x1 - x0, y1 - y0)
    for t in layout.texts:
        draw_text(band, t.text, (t.x, t.y), t.scale, t.colour)
    return band


def caption(width: int, hud: Hud) -> np.ndarray:
    """The band drawn under a panel. Nothing covers the picture."""
    return render(caption_layout(width, hud))


def draw_hud(frame: np.ndarray, hud: Hud) -> np.ndarray:
    """The frame with its caption band underneath: a new, taller array; the frame is untouched."""
    return np.concatenate([frame, caption(frame.shape[1], hud)], axis=0)
