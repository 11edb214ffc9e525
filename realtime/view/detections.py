"""A detector's panel: the frame with the shown box's map laid over, every kept box drawn, the caption beneath.

Pure: every function returns new arrays and leaves its inputs alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from realtime.engines.result import DetectResult
from realtime.maps.boxes import shown_columns
from realtime.maps.query import ALL_BOXES, Query
from realtime.sources.fitting import Letterbox, Region
from realtime.timing import Stats
from realtime.view.boxes import draw_boxes, frame_boxes
from realtime.view.caption import draw_hud
from realtime.view.hud import Hud
from realtime.view.look import Look
from realtime.view.overlay import blend


def detection_hud(
    result: DetectResult, index: int, query: Query, look: Look, stats: Stats, name: str | None, model_ms: float | None,
    notes: Sequence[str] = (),
) -> Hud:  # fmt: skip
    """The caption: the shown box's class and score (or how many boxes are fused), the best boxes beside."""
    count = int(result.count[index])
    slots = [int(result.explained[index, k]) for k in shown_columns(result, index, query)]
    if query.box == ALL_BOXES and slots:
        label, probability = f"{len(slots)} boxes fused", None
    elif slots:
        slot = slots[0]
        label, probability = result.label(int(result.classes[index, slot])), float(result.scores[index, slot])
        notes = (f"box {slot + 1} of {count}", *notes)
    else:
        label, probability = ("no box above the threshold" if count == 0 else f"box {query.box + 1}: none"), None
    top = [(result.label(int(result.classes[index, i])), float(result.scores[index, i])) for i in range(min(3, count))]
    return Hud(
        label=f"{name}: {label}" if name else label, probability=probability, method=query.method, top=top,
        display_fps=stats.display_fps, model_ms=stats.model_ms if model_ms is None else model_ms,
        latency_ms=stats.latency_ms, model_fps=stats.model_fps, map_age=stats.map_age,
        notes=tuple(notes) + (("FROZEN",) if look.frozen else ()),
    )  # fmt: skip


def detection_panel(
    image: np.ndarray, result: DetectResult, index: int, maps: np.ndarray, region: Region | None,
    placement: Letterbox, hud: Hud, query: Query, look: Look,
) -> np.ndarray:  # fmt: skip
    """The frame, the shown box's map over it, every kept box on top, and the caption beneath."""
    shown = [int(result.explained[index, k]) for k in shown_columns(result, index, query)]
    blended = blend(image, maps[0], look.alpha, region, look.style) if shown else image
    count = int(result.count[index])
    names = [result.label(int(c)) for c in result.classes[index, :count]]
    drawn = draw_boxes(blended, frame_boxes(result, index, placement, image.shape), names,
                       [float(s) for s in result.scores[index, :count]], shown)  # fmt: skip
    return draw_hud(drawn, hud)
