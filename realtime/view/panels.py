"""One model's panels for one source: the frame with its maps laid over, each with its caption beneath.

Pure: every function returns new arrays and leaves its inputs alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from realtime.engines.protocol import Engine
from realtime.engines.result import CamResult, DetectResult, Result
from realtime.maps.query import Query, explained_columns
from realtime.sources.fitting import Letterbox, Placement, Region
from realtime.timing import Stats
from realtime.view.caption import draw_hud
from realtime.view.detections import detection_hud, detection_panel
from realtime.view.hud import Hud
from realtime.view.look import Look
from realtime.view.overlay import blend
from realtime.view.text import LINE_PER_SCALE, draw_text, text_scale


@dataclass(frozen=True)
class ModelColumn:
    """One model's column of the mosaic: its result for the batch of sources, and how to caption it."""

    result: Result
    name: str | None  # shown in captions when several models are compared
    class_id: int | None  # the query's class in this model's labels
    ms: float | None = None


def label_of(result: CamResult, class_id: int) -> str:
    return result.labels[class_id] if class_id < len(result.labels) else str(class_id)


def lost_panel(size: tuple[int, int], name: str, note: str) -> np.ndarray:
    """What a source or a served model that dropped out shows while it reconnects."""
    width, height = size
    image = np.full((height, width, 3), 40, np.uint8)
    scale = text_scale(width)
    line = int(LINE_PER_SCALE * scale)
    draw_text(image, f"{name}: lost", (12, height // 2 - line // 2), scale * 1.3, (0, 200, 255))
    draw_text(image, note, (12, height // 2 + line), scale, (220, 220, 220))
    return image


def hud_for(
    result: CamResult, index: int, column: int, query: Query, look: Look, stats: Stats, name: str | None = None,
    model_ms: float | None = None, notes: Sequence[str] = (),
) -> Hud:  # fmt: skip
    """The caption of one panel: image `index`, the class in target column `column`."""
    explained = int(result.classes[index, column])
    label = label_of(result, explained)
    return Hud(
        label=f"{name}: {label}" if name else label,
        probability=float(result.probabilities[index, explained]),
        method=query.method,
        top=[(n, p) for _, n, p in result.top(index, 3)],
        display_fps=stats.display_fps,
        model_ms=stats.model_ms if model_ms is None else model_ms,
        latency_ms=stats.latency_ms,
        model_fps=stats.model_fps,
        map_age=stats.map_age,
        notes=tuple(notes) + (("FROZEN",) if look.frozen else ()),
    )


def model_panels(
    image: np.ndarray, index: int, maps: np.ndarray, region: Region | None, model: ModelColumn, query: Query,
    look: Look, stats: Stats, notes: Sequence[str] = (), placement: Placement | None = None,
) -> tuple[list[np.ndarray], Hud]:  # fmt: skip
    """One model's panels for one source: its explained map, then the other top-k maps (a detector's: one
    panel, its boxes drawn); `region` is where in the frame the maps go (None: the whole frame), `placement`
    how the frame was fitted to the model."""
    result = model.result
    columns = [0] if isinstance(result, DetectResult) else explained_columns(query, model.class_id)
    if result.lost:  # a served model whose server went away: a lost panel, like a lost camera's
        name = model.name or "model"
        hud = Hud(f"{name}: {result.lost}", None, query.method)
        placeholder = lost_panel((image.shape[1], image.shape[0]), name, result.lost)
        return [draw_hud(placeholder, hud) for _ in columns], hud
    if isinstance(result, DetectResult):
        assert isinstance(placement, Letterbox)
        hud = detection_hud(result, index, query, look, stats, model.name, model.ms, notes)
        return [detection_panel(image, result, index, maps, region, placement, hud, query, look)], hud
    if query.class_name is not None and model.class_id is None:  # another model has the class, this one not
        notes = (*notes, f"no class {query.class_name!r}: top-1")
    panels, first = [], None
    for i, column in enumerate(columns):
        hud = hud_for(result, index, column, query, look, stats, model.name, model.ms, notes)
        if i > 0:  # a secondary top-k tile: its class, without the rates again
            hud = Hud(hud.label, hud.probability, hud.method, notes=(f"top {column + 1}",))
        first = first or hud
        blended = blend(image, maps[i], look.alpha, region, look.style)
        panels.append(draw_hud(blended, hud))
    assert first is not None
    return panels, first


def panel_names(engines: Sequence[Engine]) -> list[str]:
    """Each model's caption name, with what tells it apart from the others: its precision where that
    differs ("vgg16 int8 (all)"), else its file name ("vgg16 (before.onnx)"), else its place."""
    names = [e.info.model_name for e in engines]
    if len(set(names)) == len(names):
        return names
    with_precision = [f"{e.info.model_name} {e.info.precision}" for e in engines]
    if len(set(with_precision)) == len(names):
        return with_precision
    with_file = [f"{name} ({e.path.name})" for name, e in zip(with_precision, engines, strict=True)]
    if len(set(with_file)) == len(names):
        return with_file
    return [f"{name} #{i + 1}" for i, name in enumerate(with_file)]
