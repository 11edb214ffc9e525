"""How uint8 BGR frames become the model's input: the presets, and the same arithmetic in numpy.

Data only (no graph building): the config names a preset, contract_graph.py bakes it into the
graph, and the tests use `preprocess_numpy` as the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from realtime import contract
from realtime.export.graph.layout import NCHW


@dataclass(frozen=True)
class Preprocess:
    """uint8 BGR -> (pixel - mean) / std in the model's channel order, on the 0-255 scale."""

    channels: str  # "rgb" | "bgr": the order the model reads
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
PRESETS: Mapping[str, Preprocess] = {
    "caffe": Preprocess("bgr", (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)),
    "tf": Preprocess("rgb", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "torch": Preprocess(
        "rgb",
        tuple(255.0 * m for m in IMAGENET_MEAN_RGB),  # type: ignore[arg-type]
        tuple(255.0 * s for s in IMAGENET_STD_RGB),  # type: ignore[arg-type]
    ),
    "raw": Preprocess("rgb", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "unit": Preprocess("rgb", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),
}
assert set(PRESETS) == set(contract.PREPROCESSING_MODES)


def preprocess_numpy(image: np.ndarray, spec: Preprocess, layout: str) -> np.ndarray:
    """The same preprocessing in numpy: the reference for tests and self-checks."""
    pixels = image.astype(np.float32)
    if spec.channels == "rgb":
        pixels = pixels[..., ::-1]
    x = (pixels - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == NCHW else x)
