"""From engine results to the picture: maps by the chosen method, captions, and the mosaic.

Rows are sources, columns are models (and a model's top-k maps side by side). Pure:
every function returns new arrays and leaves its inputs alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from realtime import cam, overlay
from realtime.caption import draw_hud
from realtime.controls import Controls, explained_columns
from realtime.engine import CamResult, Engine
from realtime.frames import Region


@dataclass(frozen=True)
class Stats:
    """The rates and times the captions show, as of the last displayed frame (0: not measured yet)."""

    displayed: int = 0
    display_fps: float = 0.0
    model_ms: float = 0.0  # every model's time for one frame, together
    latency_ms: float = 0.0
    engine_ms: tuple[float, ...] = ()  # each model's own time
    stage_ms: dict[str, float] = field(default_factory=dict)  # wall time, shared cores included
    stage_cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU time of the thread doing the stage
    model_fps: float | None = None  # set when display and model run at different rates
    map_age: int | None = None  # frames since the shown map's model frame


def panel_maps(result: CamResult, index: int, controls: Controls, class_id: int | None) -> np.ndarray:
    """Normalised maps [K',h,w] of image `index` for the explained columns, by the chosen method,
    at the chosen layer (or at input resolution for the input-gradient methods)."""
    columns = explained_columns(controls, class_id)
    layers = [result.layer(i) for i in range(result.layer_count)]
    chosen = layers[min(controls.layer, len(layers) - 1)]
    inputs = cam.MapInputs(
        weights=chosen.weights[index, columns],
        activations=chosen.activations[index],
        gradients=None if chosen.gradients is None else chosen.gradients[index, columns],
        graph_cam=chosen.cam[index, columns],
        saliency=None if result.saliency is None else result.saliency[index, columns],
        guided=None if result.guided is None else result.guided[index, columns],
        layers=tuple(
            (layer.activations[index], layer.gradients[index, columns])
            for layer in layers
            if layer.gradients is not None
        ),
    )
    return cam.normalise(cam.maps(controls.method, inputs))


def label_of(result: CamResult, class_id: int) -> str:
    return result.labels[class_id] if class_id < len(result.labels) else str(class_id)


def hud_for(
    result: CamResult,
    index: int,
    column: int,
    controls: Controls,
    stats: Stats,
    name: str | None = None,
    model_ms: float | None = None,
    notes: Sequence[str] = (),
) -> overlay.Hud:
    """The caption of one panel: image `index`, the class in target column `column`."""
    explained = int(result.classes[index, column])
    label = label_of(result, explained)
    return overlay.Hud(
        label=f"{name}: {label}" if name else label,
        probability=float(result.probabilities[index, explained]),
        method=controls.method,
        top=[(n, p) for _, n, p in result.top(index, 3)],
        display_fps=stats.display_fps,
        model_ms=stats.model_ms if model_ms is None else model_ms,
        latency_ms=stats.latency_ms,
        model_fps=stats.model_fps,
        map_age=stats.map_age,
        notes=tuple(notes) + (("FROZEN",) if controls.frozen else ()),
    )


@dataclass(frozen=True)
class Model:
    """What the mosaic needs to know of one model besides its result."""

    name: str | None  # shown in captions when several models are compared
    class_id: int | None  # the controls' class in this model's labels
    region: Region | None  # where its maps go on the frame (None: the whole frame)
    ms: float | None = None


def model_panels(
    image: np.ndarray, result: CamResult, index: int, maps: np.ndarray, model: Model, view: Controls, stats: Stats,
    notes: Sequence[str] = (),
) -> tuple[list[np.ndarray], overlay.Hud]:  # fmt: skip
    """One model's panels for one source: its explained map, then the other top-k maps."""
    columns = explained_columns(view, model.class_id)
    if result.lost:  # a served model whose server went away: a lost panel, like a lost camera's
        name = model.name or "model"
        hud = overlay.Hud(f"{name}: {result.lost}", None, view.method)
        placeholder = overlay.lost_panel((image.shape[1], image.shape[0]), name, result.lost)
        return [draw_hud(placeholder, hud) for _ in columns], hud
    if view.class_name is not None and model.class_id is None:  # another model has the class, this one not
        notes = (*notes, f"no class {view.class_name!r}: top-1")
    panels, first = [], None
    for i, column in enumerate(columns):
        hud = hud_for(result, index, column, view, stats, model.name, model.ms, notes)
        if i > 0:  # a secondary top-k tile: its class, without the rates again
            hud = overlay.Hud(hud.label, hud.probability, hud.method, notes=(f"top {column + 1}",))
        first = first or hud
        blended = overlay.blend(image, maps[i], view.alpha, model.region, view.style)
        panels.append(draw_hud(blended, hud))
    assert first is not None
    return panels, first


def mosaic(
    images: Sequence[np.ndarray | None],
    indices: Sequence[int | None],
    results: Sequence[CamResult],
    maps: Sequence[Sequence[np.ndarray | None]],
    models: Sequence[Model],
    view: Controls,
    stats: Stats,
    notes: Sequence[str] = (),
    lost: Sequence[str] = (),
    source_names: Sequence[str] = (),
) -> tuple[np.ndarray, tuple[overlay.Hud, ...]]:
    """Every source (row) explained by every model (column); a lost source shows a placeholder row.

    indices[s] is source s's image in the results' batch; maps[m][s] are model m's maps for
    source s (None where the source had no frame in that batch).
    """
    shown = [im for im in images if im is not None]
    if not shown:
        raise ValueError("no source has a frame to draw")
    size = (shown[0].shape[1], shown[0].shape[0])
    rows, huds = [], []
    for s, image in enumerate(images):
        note = lost[s] if s < len(lost) else ""
        name = source_names[s] if s < len(source_names) else f"source {s + 1}"
        row_maps = [maps[m][s] for m in range(len(models))]
        index = indices[s]
        if image is None or index is None or any(m is None for m in row_maps):
            placeholder = overlay.lost_panel(size, name, note or "waiting for the first frame")
            hud = overlay.Hud(f"{name}: {note or 'no picture yet'}", None, view.method)
            rows.append(overlay.tile([draw_hud(placeholder, hud)] * len(models)))
            continue
        row = []
        for model, result, model_maps in zip(models, results, row_maps, strict=True):
            assert model_maps is not None
            panels, hud = model_panels(image, result, index, model_maps, model, view, stats, notes)
            row += panels
            huds.append(hud)
        rows.append(overlay.tile(row))
    return (rows[0] if len(rows) == 1 else overlay.stack(rows)), tuple(huds)


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
