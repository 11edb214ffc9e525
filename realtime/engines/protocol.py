"""What an engine is: a Grad-CAM graph's contract and one call per batch, wherever the graph runs.

The loop, the API, the demo's evaluation and the exporter's checks need nothing else, so a local
onnxruntime session (engines.local) and a served model (engines.remote) are interchangeable, and a
new runtime (OpenVINO, a detector's graph) is one more class with these members.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from realtime.contract import ModelInfo
from realtime.engines.result import CamResult


class Engine(Protocol):
    """A loaded, checked and warmed-up Grad-CAM graph."""

    info: ModelInfo  # the contract as this graph follows it: sizes, labels, layers, what it provides
    path: Path  # its file, or the served model's name: captions tell models apart by it
    provider: str  # where it runs, said in the summary line
    notice: str  # one line for the user at start: where it runs and why not where asked
    cpu_warning: str | None  # one line when an int8 graph does not suit this CPU
    warmup_ms: float  # the last warm-up call: what a frame will cost, known before the first one

    @property
    def provides(self) -> frozenset[str]:
        """What the graph gives besides Grad-CAM at its first layer (contract.GRADIENTS, SALIENCY, ...)."""
        ...

    def run(
        self, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray, need_gradients: bool = True
    ) -> CamResult:
        """One call for a batch of model-sized BGR uint8 images [N,H,W,3] and their targets [N,K]."""
        ...
