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
    shapes: dict[str, tuple[int, ...]] = {}
    unknown = False
    for name, dims in _inferred(light).items():
        rest = dims[1:]
        if all(isinstance(d, int) and d > 0 for d in rest):
            shapes[name] = tuple(int(d) for d in rest)  # type: ignore[arg-type]
        else:
            unknown = True
    if unknown:  # reshape targets computed from the batch (Swin's windows): at a fixed batch they are numbers
        one, two = (_inferred(_at_batch(light, batch)) for batch in (1, 2))
        for name, dims in one.items():
            other = two.get(name)
            if name in shapes or other is None or len(other) != len(dims) or dims[0] != 1 or other[0] != 2:
                continue  # not a batch-first tensor: its first axis is not the batch at both sizes
            if dims[1:] == other[1:] and all(isinstance(d, int) and d > 0 for d in dims[1:]):
                shapes[name] = tuple(int(d) for d in dims[1:])  # type: ignore[arg-type]
    for init in model.graph.initializer:
        shapes.setdefault(init.name, tuple(init.dims[1:]))
    return shapes


def element_types(model: onnx.ModelProto) -> dict[str, int]:
    """Every tensor's element type, as shape inference finds it (TensorProto's codes)."""
    inferred = onnx.shape_inference.infer_shapes(_without_large_initializers(model))
    values = (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)
    return {value.name: value.type.tensor_type.elem_type for value in values}


def _inferred(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Every float tensor's inferred dims (None where unknown)."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    found = {}
    for value in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.elem_type == TensorProto.FLOAT and dims:
            found[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return found


def _at_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy whose image inputs have a fixed batch (the weights are already inputs without values)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    initializers = {init.name for init in fixed.graph.initializer}
    for value in fixed.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value") and value.name not in initializers:
            dims[0].Clear()
            dims[0].dim_value = batch
    return fixed


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
