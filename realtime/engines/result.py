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
