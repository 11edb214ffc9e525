"""What one engine call returns for a batch: a frozen CamResult, whichever engine made it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LayerMaps:
    """One explained layer's outputs for a batch (see contract.layer_output)."""

    activations: np.ndarray  # [N,h,w,k]
    weights: np.ndarray  # [N,K,k]
    cam: np.ndarray  # [N,K,h,w]
    gradients: np.ndarray | None  # [N,K,h,w,k]


@dataclass(frozen=True)
class CamResult:
    """Everything one onnxruntime call returns for a batch, plus the time it took."""

    logits: np.ndarray  # [N,C]
    probabilities: np.ndarray  # [N,C]
    classes: np.ndarray  # [N,K]
    activations: np.ndarray | None  # [N,h,w,k]
    weights: np.ndarray  # [N,K,k]
    cam: np.ndarray  # [N,K,h,w], the graph's own Grad-CAM
    gradients: np.ndarray | None  # [N,K,h,w,k] for `full` graphs
    seconds: float
    provider: str
    labels: Sequence[str] = field(repr=False, default=())
    more_layers: tuple[LayerMaps, ...] = field(repr=False, default=())  # layers 1.. of a version 2 graph
    saliency: np.ndarray | None = field(repr=False, default=None)  # [N,K,H,W,3] at the model input
    guided: np.ndarray | None = field(repr=False, default=None)  # [N,K,H,W,3] guided backpropagation
    lost: str = ""  # a served model's server gone: why (the panels show it instead of maps); "" normally

    @property
    def layer_count(self) -> int:
        return 1 + len(self.more_layers)

    def layer(self, index: int) -> LayerMaps:
        """Layer `index`'s outputs; 0 is the version 1 outputs above."""
        if index == 0:
            assert self.activations is not None
            return LayerMaps(self.activations, self.weights, self.cam, self.gradients)
        return self.more_layers[index - 1]

    def top(self, index: int = 0, k: int = 5) -> list[tuple[int, str, float]]:
        """The k most probable classes of image `index`: (id, name, probability)."""
        probs = self.probabilities[index]
        order = np.argsort(-probs, kind="stable")[:k]
        return [(int(c), self.labels[c] if c < len(self.labels) else str(c), float(probs[c])) for c in order]


@dataclass(frozen=True)
class LevelMaps:
    """One level of a detector's head for a batch: its map, and each explained box's view of it."""

    activations: np.ndarray  # [N,h,w,c] the head input
    weights: np.ndarray  # [N,K,c] Grad-CAM's channel weights (zero for boxes on other levels)
    cam: np.ndarray  # [N,K,h,w] Grad-CAM over its max
    layercam: np.ndarray  # [N,K,h,w] LayerCAM, raw
    gradients: np.ndarray  # [N,K,s,s,c] the gradient in an s x s window centred on the box's cell


@dataclass(frozen=True)
class DetectResult:
    """Everything one call of a detector graph returns for a batch: kept boxes (model-input pixels, best
    first), the explained ones, and their maps per level."""

    boxes: np.ndarray  # [N,D,4] x1, y1, x2, y2
    scores: np.ndarray  # [N,D]
    classes: np.ndarray  # [N,D] int64, -1 past the count
    count: np.ndarray  # [N]
    explained: np.ndarray  # [N,K] the slot each target column explains, -1 for none
    box_logits: np.ndarray  # [N,K]
    anchors: np.ndarray  # [N,K,3] level, row, column (-1 for none)
    levels: tuple[LevelMaps, ...]
    fused: np.ndarray  # [N,K,h0,w0] each level's LayerCAM over its max, their max, on the finest grid
    seconds: float
    provider: str
    labels: Sequence[str] = field(repr=False, default=())
    lost: str = ""

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)


Result = CamResult | DetectResult  # what an engine's call returns: a classifier's or a detector's answer
