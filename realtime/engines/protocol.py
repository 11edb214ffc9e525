"""What an engine is: a Grad-CAM graph's contract and one call per batch, wherever the graph runs.

The loop, the API, the demo's evaluation and the exporter's checks need nothing else, so a local
onnxruntime session (engines.local), a served model (engines.remote) and a detector's graph
(engines.detector) are interchangeable, and a new runtime (OpenVINO, say) is one more class with these members.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from realtime.contract import DetectorInfo, ModelInfo
from realtime.engines.result import Result


class Engine(Protocol):
    """A loaded, checked and warmed-up Grad-CAM graph."""

    @property
    def info(self) -> ModelInfo | DetectorInfo:
        """The contract as this graph follows it: sizes, labels, layers, what it provides."""
        ...

    @property
    def path(self) -> Path:
        """Its file, or the served model's name: captions tell models apart by it."""
        ...

    @property
    def provider(self) -> str:
        """Where it runs, said in the summary line."""
        ...

    @property
    def notice(self) -> str:
        """One line for the user at start: where it runs and why not where asked."""
        ...

    @property
    def cpu_warning(self) -> str | None:
        """One line when an int8 graph does not suit this CPU."""
        ...

    @property
    def warmup_ms(self) -> float:
        """The last warm-up call: what a frame will cost, known before the first one."""
        ...

    @property
    def provides(self) -> frozenset[str]:
        """What the graph gives besides Grad-CAM at its first layer (contract.GRADIENTS, SALIENCY, ...)."""
        ...

    def run(
        self, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray, need_gradients: bool = True
    ) -> Result:
        """One call for a batch of model-sized BGR uint8 images [N,H,W,3] and their targets [N,K]: a classifier's
        CamResult, or a detector's DetectResult (info.task says which)."""
        ...
