"""The Python API's answer for a detector: every kept box in frame pixels, and each explained box's map.

cam = GradCam("models/yolov8n_gradcam_detector.onnx")
found = cam(frame_bgr)                       # a Detections: found.boxes[0].label, .score, .box, .map
shown = found.overlay(frame_bgr, box=0)      # a new array: the best box's map, every box drawn
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from realtime.engines.result import DetectResult
from realtime.maps import methods
from realtime.maps.boxes import box_inputs
from realtime.maps.query import ALL_BOXES
from realtime.sources.fitting import Letterbox
from realtime.view.boxes import draw_boxes
from realtime.view.overlay import DEFAULT_ALPHA, DEFAULT_STYLE, blend


@dataclass(frozen=True)
class Detection:
    """One kept box: where (frame pixels), what, how sure; and, when it was explained, its map."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    class_id: int
    label: str
    score: float  # the class's sigmoid score
    logit: float | None  # its class logit (before the sigmoid), when explained
    map: np.ndarray | None  # [h,w] in [0,1] over the frame, at the finest level's resolution; None: not explained
    level: int | None  # the head input it was predicted on (0: the finest), when explained


@dataclass(frozen=True)
class Detections:
    """What a detector saw in one frame, best box first."""

    boxes: tuple[Detection, ...]
    method: str
    ms: float  # the model call's time (shared by every frame of a batch)

    def __post_init__(self) -> None:
        for found in self.boxes:
            if found.map is not None:
                found.map.setflags(write=False)

    def overlay(
        self, frame_bgr: np.ndarray, box: int = 0, alpha: float = DEFAULT_ALPHA, style: str = DEFAULT_STYLE
    ) -> np.ndarray:
        """The frame with box `box`'s map (ALL_BOXES, -1: every explained box's, fused) and every box drawn:
        a new array."""
        chosen = [(i, d.map) for i, d in enumerate(self.boxes) if d.map is not None and box in (i, ALL_BOXES)]
        out = frame_bgr
        if chosen:
            out = blend(frame_bgr, np.max([m for _, m in chosen], axis=0), alpha, None, style)
        shown = [i for i, _ in chosen]
        return draw_boxes(out, np.array([d.box for d in self.boxes]).reshape(-1, 4), [d.label for d in self.boxes],
                          [d.score for d in self.boxes], shown)  # fmt: skip


def detections(result: DetectResult, index: int, method: str, placement: Letterbox, frame_shape: Sequence[int],
               explain: int) -> Detections:  # fmt: skip
    """Image `index` of a detector's result as the API gives it; `explain`: how many target columns ran."""
    count = int(result.count[index])
    boxes = placement.to_frame(result.boxes[index, :count], tuple(frame_shape))
    maps: dict[int, tuple[np.ndarray | None, float | None, int | None]] = {}
    with_gradients = methods.method(method).needs_gradients
    for column in range(min(explain, result.explained.shape[1])):
        slot = int(result.explained[index, column])
        if slot >= 0:
            raw = methods.maps(method, box_inputs(result, index, column, with_gradients))
            grid = _on_finest(methods.normalise(raw)[0], result)
            maps[slot] = (np.array(placement.picture_of(grid)), float(result.box_logits[index, column]),
                          int(result.anchors[index, column, 0]))  # fmt: skip
    found = []
    for slot in range(count):
        box_map, logit, on_level = maps.get(slot, (None, None, None))
        class_id = int(result.classes[index, slot])
        x1, y1, x2, y2 = (float(v) for v in boxes[slot])
        found.append(Detection((x1, y1, x2, y2), class_id, result.label(class_id), float(result.scores[index, slot]),
                               logit, box_map, on_level))  # fmt: skip
    return Detections(tuple(found), method, result.seconds * 1000.0)


def _on_finest(grid: np.ndarray, result: DetectResult) -> np.ndarray:
    import cv2

    h0, w0 = result.levels[0].activations.shape[1:3]
    return grid if grid.shape == (h0, w0) else cv2.resize(grid, (w0, h0), interpolation=cv2.INTER_LINEAR)
