"""Any ONNX classifier: Grad-CAM's cost against forward-only for torchvision exports, batch 1, CPU.

The torch export and each gradcam-export run in fresh processes (torch and TensorFlow do not
share a process safely, and each export's peak RSS is measured alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench.graphs import GRAPHS, backward_weights, weight_read_floor
from scripts.bench.timing import alternate, child

MODELS = ("resnet50", "mobilenet_v3_large")


def measure(folder: Path, rounds: int, models: Sequence[str] = MODELS) -> dict[str, Any]:
    """Per model: export time and peak RSS of each graph, ms per call, its ratio to forward-only, and the
    floor that re-reading the backward's weights sets on that ratio."""
    import onnxruntime as ort

    from realtime.engines.providers import cpu_session_options

    report: dict[str, Any] = {}
    feeds = {
        "image": np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8),
        "targets": np.full((1, 1), -1, np.int64),
    }
    for name in models:
        source = folder / f"{name}.onnx"
        child("torch", name, str(source))
        row: dict[str, Any] = {}
        sessions = {}
        for graph in GRAPHS:
            out = folder / f"{name}_{graph}.onnx"
            row[graph] = child("onnx-export", str(source), graph, str(out))
            sessions[graph] = ort.InferenceSession(str(out), cpu_session_options(), providers=["CPUExecutionProvider"])
        ms = alternate({g: (lambda s=s: s.run(None, feeds)) for g, s in sessions.items()}, rounds)
        for graph in GRAPHS:
            row[graph].update({"ms": ms[graph], "ratio": ms[graph] / ms["none"]})
        weights = {g: backward_weights(str(folder / f"{name}_{g}.onnx")) for g in ("pooled", "full")}
        row["floor"] = weight_read_floor(lambda s=sessions["none"]: s.run(None, feeds), weights, rounds)
        report[name] = row
    return report
