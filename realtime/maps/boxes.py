"""A detector's maps: each explained box's, by the query's method, on the finest level's grid. Pure numpy.

A box's gradient is given in a small window around its cell on its own level (zero elsewhere, and on
the other levels): it is laid into a zero map of the level only for the methods that need gradients,
so every CAM method of the table (methods.METHODS) serves boxes as it serves classes.
"""

from __future__ import annotations

import cv2
import numpy as np

from realtime.engines.result import DetectResult
from realtime.maps import methods
from realtime.maps.query import ALL_BOXES, Query


def shown_columns(result: DetectResult, index: int, query: Query) -> list[int]:
    """The target columns the view shows: the chosen box's, or every explained one's (none without a box)."""
    explained = result.explained[index]
    if query.box == ALL_BOXES:
        return [int(k) for k in np.flatnonzero(explained >= 0)]
    return [query.box] if 0 <= query.box < len(explained) and explained[query.box] >= 0 else []


def window_in_map(window: np.ndarray, row: int, column: int, shape: tuple[int, int]) -> np.ndarray:
    """A [s,s,c] window centred on (row, column) laid into zeros of `shape` (h, w): [h,w,c], clipped."""
    s, h, w = window.shape[0], *shape
    r = s // 2
    full = np.zeros((h, w, window.shape[2]), np.float32)
    top, left = row - r, column - r
    y0, x0, y1, x1 = max(0, top), max(0, left), min(h, top + s), min(w, left + s)
    full[y0:y1, x0:x1] = window[y0 - top : y1 - top, x0 - left : x1 - left]
    return full


def box_inputs(result: DetectResult, index: int, column: int, with_gradients: bool) -> methods.MapInputs:
    """What the methods read for one explained box: its level's map and Grad-CAM, and (when asked) its
    gradient at every level laid into full maps."""
    level, row, column_ = (int(v) for v in result.anchors[index, column])
    own = result.levels[level]
    layers: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    gradients = None
    if with_gradients:
        full = []
        for i, other in enumerate(result.levels):
            h, w, c = other.activations.shape[1:]
            grid = window_in_map(other.gradients[index, column], row, column_, (h, w)) if i == level else (
                np.zeros((h, w, c), np.float32))  # fmt: skip
            full.append((other.activations[index], grid[None]))
        layers, gradients = tuple(full), full[level][1]
    return methods.MapInputs(
        weights=own.weights[index, [column]], activations=own.activations[index], gradients=gradients,
        graph_cam=own.cam[index, [column]], layers=layers,
    )  # fmt: skip


def box_maps(result: DetectResult, index: int, query: Query) -> np.ndarray:
    """[1,h0,w0] in [0,1] on the finest level's grid: the chosen box's map, or the max over every explained
    box's; zeros when there is no box to show."""
    h0, w0 = result.levels[0].activations.shape[1:3]
    with_gradients = methods.method(query.method).needs_gradients
    fused = np.zeros((1, h0, w0), np.float32)
    for column in shown_columns(result, index, query):
        raw = methods.maps(query.method, box_inputs(result, index, column, with_gradients))
        box = methods.normalise(raw)[0]
        if box.shape != (h0, w0):
            box = cv2.resize(box, (w0, h0), interpolation=cv2.INTER_LINEAR)
        fused[0] = np.maximum(fused[0], box)
    return fused
