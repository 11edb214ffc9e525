"""Static shapes of every tensor in a graph, found without loading its large weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Dims after the batch axis of every tensor shape inference can pin down (None-free only).

    Large initializers become inputs of a weightless copy first, so inference
    never copies the weights.
    """
    light = _without_large_initializers(model)
    inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    for value in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.elem_type != TensorProto.FLOAT or not dims:
            continue
        rest = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
        if all(isinstance(d, int) and d > 0 for d in rest):
            shapes[value.name] = tuple(int(d) for d in rest)  # type: ignore[arg-type]
    for init in model.graph.initializer:
        shapes.setdefault(init.name, tuple(init.dims[1:]))
    return shapes


def _without_large_initializers(model: onnx.ModelProto, limit: int = 4096) -> onnx.ModelProto:
    light = onnx.helper.make_model(
        onnx.helper.make_graph(
            list(model.graph.node),
            model.graph.name or "light",
            list(model.graph.input),
            list(model.graph.output),
            [init for init in model.graph.initializer if _nbytes(init) <= limit],
        ),
        opset_imports=list(model.opset_import),
    )
    light.ir_version = model.ir_version
    for init in model.graph.initializer:
        if _nbytes(init) > limit:
            light.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return light


def _nbytes(init: onnx.TensorProto) -> int:
    return int(np.prod(init.dims, dtype=np.int64)) * 4
