"""From an engine's result and a query to the maps shown: the chosen method, columns and layer (a detector's:
the chosen box), placed on the frame as the frame was fitted to the model. Pure numpy."""

from __future__ import annotations

import numpy as np

from realtime.engines.result import DetectResult, Result
from realtime.maps import methods
from realtime.maps.boxes import box_maps
from realtime.maps.query import Query, explained_columns
from realtime.sources.fitting import Letterbox, Placement, Region


def maps_for(result: Result, index: int, query: Query, class_id: int | None) -> np.ndarray:
    """Normalised maps [K',h,w] of image `index` for the explained columns, by the query's method, at its
    layer (or at input resolution for the input-gradient methods); a detector's: the chosen box's [1,h,w]."""
    if isinstance(result, DetectResult):
        return box_maps(result, index, query)
    columns = explained_columns(query, class_id)
    layers = [result.layer(i) for i in range(result.layer_count)]
    chosen = layers[min(query.layer, len(layers) - 1)]
    inputs = methods.MapInputs(
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
    return methods.normalise(methods.maps(query.method, inputs))


def on_frame(maps: np.ndarray, placement: Placement | None) -> tuple[np.ndarray, Region | None]:
    """Maps over the model's input -> maps to lay over the frame, and where (None: the whole frame). A
    letterboxed frame's maps lose the grey borders' part; a cropped one's go back onto the crop."""
    if isinstance(placement, Letterbox):
        return placement.picture_of(maps), None
    return maps, placement
