"""The picture the outputs are given: every source (row) explained by every model (column).

Pure: every function returns new arrays and leaves its inputs alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from realtime.maps.query import Query
from realtime.sources.fitting import Placement, Region
from realtime.timing import Stats
from realtime.view.caption import draw_hud
from realtime.view.hud import Hud
from realtime.view.look import Look
from realtime.view.panels import ModelColumn, lost_panel, model_panels
from realtime.view.text import draw_text


@dataclass(frozen=True)
class SourceRow:
    """One source's row: its frame, its place in the models' batch, and each model's maps for it."""

    name: str
    image: np.ndarray | None  # None: no frame yet, or lost
    index: int | None  # its image in the results' batch (None: it had no frame in that batch)
    maps: tuple[np.ndarray | None, ...]  # per model, [K,h,w] in [0,1]
    regions: tuple[Region | None, ...] = ()  # per model, where its maps go on the frame (None or none: all of it)
    lost: str = ""  # why it shows no picture ("reconnecting"), "" when it is fine
    placements: tuple[Placement | None, ...] = ()  # per model, how the frame was fitted to it (a detector's boxes)


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


def mosaic(
    rows: Sequence[SourceRow], columns: Sequence[ModelColumn], query: Query, look: Look, stats: Stats,
    notes: Sequence[str] = (),
) -> tuple[np.ndarray, tuple[Hud, ...]]:  # fmt: skip
    """Every source explained by every model; a source without a picture shows a placeholder row."""
    shown = [row.image for row in rows if row.image is not None]
    if not shown:
        raise ValueError("no source has a frame to draw")
    size = (shown[0].shape[1], shown[0].shape[0])
    drawn, huds = [], []
    for row in rows:
        if row.image is None or row.index is None or any(m is None for m in row.maps):
            placeholder = lost_panel(size, row.name, row.lost or "waiting for the first frame")
            hud = Hud(f"{row.name}: {row.lost or 'no picture yet'}", None, query.method)
            drawn.append(tile([draw_hud(placeholder, hud)] * len(columns)))
            continue
        panels = []
        regions = row.regions or (None,) * len(columns)
        placements = row.placements or (None,) * len(columns)
        for column, maps, region, placement in zip(columns, row.maps, regions, placements, strict=True):
            assert maps is not None
            more, hud = model_panels(row.image, row.index, maps, region, column, query, look, stats, notes, placement)
            panels += more
            huds.append(hud)
        drawn.append(tile(panels))
    return (drawn[0] if len(drawn) == 1 else stack(drawn)), tuple(huds)
