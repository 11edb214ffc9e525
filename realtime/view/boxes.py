"""A detector's boxes drawn on the frame: each kept box with its label and score, the explained one bold.

Pure: every function returns a new array and leaves its inputs alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from realtime.engines.result import DetectResult
from realtime.sources.fitting import Letterbox
from realtime.view.text import FONT, draw_text, text_scale, thickness

SHOWN = (0, 220, 255)  # the explained box: the caption's accent colour (BGR)
OTHER = (235, 235, 235)


def frame_boxes(result: DetectResult, index: int, placement: Letterbox, frame_shape: tuple[int, ...]) -> np.ndarray:
    """The kept boxes of image `index` in frame pixels [count, 4], clipped to the frame."""
    count = int(result.count[index])
    return placement.to_frame(result.boxes[index, :count], frame_shape)


def draw_boxes(
    frame: np.ndarray, boxes: np.ndarray, names: Sequence[str], scores: Sequence[float], shown: Sequence[int]
) -> np.ndarray:
    """The frame with every box and its "label 87%" tag; the boxes in `shown` (slots) drawn thick, in colour."""
    out = frame.copy()
    scale = text_scale(frame.shape[1]) * 0.7
    stroke = thickness(scale)
    for slot, (box, name, score) in enumerate(zip(boxes, names, scores, strict=True)):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        colour = SHOWN if slot in shown else OTHER
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2 * stroke if slot in shown else stroke, cv2.LINE_AA)
        tag = f"{name} {score * 100:.0f}%"
        (w, h), _ = cv2.getTextSize(tag, FONT, scale, stroke)
        top = y1 - 4 if y1 - h - 8 >= 0 else min(frame.shape[0] - 4, y1 + h + 6)
        draw_text(out, tag, (max(0, min(x1, frame.shape[1] - w - 2)), top), scale, colour)
    return out


def box_at(boxes: np.ndarray, x: float, y: float) -> int | None:
    """The slot of the smallest box containing (x, y) (frame pixels), or None: what a click picks."""
    inside = [i for i, (x1, y1, x2, y2) in enumerate(boxes) if x1 <= x <= x2 and y1 <= y <= y2]
    return min(inside, key=lambda i: (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]), default=None)
