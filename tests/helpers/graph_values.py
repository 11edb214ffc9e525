"""A Grad-CAM graph's own forward values: the references take their ReLU and max-pool decisions from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def graph_values(
    graph: Path, image: np.ndarray, targets: np.ndarray, tensor_of: Callable[[Any], str | None]
) -> tuple[dict[str, np.ndarray], list[tuple[str, np.ndarray]]]:
    """The graph's outputs, and its forward nodes' values (not the backward's `gradcam/...` ones) in graph
    order as (op type, value) pairs, from one session and one run (a large graph's session takes seconds to
    open). `tensor_of(node)` names the tensor wanted from a node, or None to skip it."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(graph))
    picked = [(n.op_type, t) for n in model.graph.node if not n.name.startswith("gradcam") and (t := tensor_of(n))]
    outputs = [o.name for o in model.graph.output]
    names = [t for _, t in picked]
    model.graph.output.extend([onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in names])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(outputs + names, {"image": image, "targets": targets})
    forward = [(op, v) for (op, _), v in zip(picked, values[len(outputs) :], strict=True)]
    return dict(zip(outputs, values[: len(outputs)], strict=True)), forward
