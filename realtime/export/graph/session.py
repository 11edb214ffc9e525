"""An onnxruntime session of an in-memory graph, for the exporter's own probes and checks."""

from __future__ import annotations

from typing import Any

import onnx


def cpu_session(model: onnx.ModelProto, optimize: bool = True) -> Any:
    """A quiet CPU session; `optimize=False` runs every node as written (no fused float32 kernels in a
    float64 head, no constant folding of what a probe reads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
