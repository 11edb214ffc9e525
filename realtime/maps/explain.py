"""From an engine's result and a query to the maps shown: the chosen method, columns and layer. Pure numpy."""

from __future__ import annotations

import numpy as np

from realtime.engines.result import CamResult
from realtime.maps import methods
from realtime.maps.query import Query, explained_columns


def maps_for(result: CamResult, index: int, query: Query, class_id: int | None) -> np.ndarray:
    """Normalised maps [K',h,w] of image `index` for the explained columns, by the query's method, at its
    layer (or at input resolution for the input-gradient methods)."""
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
