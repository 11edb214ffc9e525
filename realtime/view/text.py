"""Text on pictures: one font, one size rule, a drop shadow; and the key list laid over the window.

Every caption, placeholder and help screen takes its size from `text_scale`, so text that reads from
the back of a room on one panel reads the same on every other.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
LINE_PER_SCALE = 44  # a caption line's height in pixels at font scale 1 (FONT's cap height is about 22)


def text_scale(width: int) -> float:
    """The font scale for text on a picture `width` px wide: capitals 2.5% of a 4:3 or 16:9 panel's height
    with its caption, so they read from the back of a room once the window fills a projector; from 0.35
    (a thumbnail) to 2.4."""
    return max(0.35, min(2.4, width / 880))


def thickness(scale: float) -> int:
    """Stroke width for a font scale: thin strokes vanish on a projector once the text is large."""
    return max(1, int(scale * 1.4 + 0.3))


def draw_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int]) -> None:
    """Text with a drop shadow of its own stroke width, drawn into `img` (the caller's own new array);
    a thicker black pass would advance wider and trail ghost letters."""
    stroke = thickness(scale)
    cv2.putText(img, text, (org[0] + stroke, org[1] + stroke), FONT, scale, (0, 0, 0), stroke, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, color, stroke, cv2.LINE_AA)


def key_help(frame: np.ndarray, keys: Mapping[str, str]) -> np.ndarray:
    """The frame with the key list over its top left, on a dark box: a new array. The text is sized as a
    caption on a panel of the frame's height, so it reads from the back of a room on a projector."""
    out = frame.copy()
    height = frame.shape[0]
    scale = text_scale(height * 4 // 3)
    line = int(scale * LINE_PER_SCALE * 0.75)
    lines = ["keys (h hides this)", *(f"{key:>7}  {what}" for key, what in keys.items())]
    widths = [cv2.getTextSize(text, FONT, scale, 1)[0][0] for text in lines]
    box_w = min(frame.shape[1], max(widths) + 2 * line)
    box_h = min(height, line * (len(lines) + 1))
    region = out[:box_h, :box_w]
    region[:] = (region * 0.25).astype(np.uint8)
    for i, text in enumerate(lines):
        draw_text(out, text, (line, line * (i + 1)), scale, (255, 255, 255) if i else (0, 220, 255))
    return out
