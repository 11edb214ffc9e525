"""Static shapes of every tensor in a graph, found without loading its large weights."""

from __future__ import annotations

import functools

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Dims after the batch axis of every tensor shape inference can pin down (None-free only).

    Large initializers become inputs of a weightless copy first, so inference
    never copies the weights.
    """
    light = _without_large_initializers(model)
    shapes: dict[str, tuple[int, ...]] = {}
    unknown = False
    floats = _inferred(light)
    for name, inferred in floats.items():
        rest = inferred[1:]
        if all(isinstance(d, int) and d > 0 for d in rest):
            shapes[name] = tuple(int(d) for d in rest)  # type: ignore[arg-type]
        else:
            unknown = True
    if unknown:  # reshape targets computed from the batch (Swin's windows): at a fixed batch they are numbers
        one, two = (shapes_at_batch(model, batch) for batch in (1, 2))
        for name, dims in one.items():
            other = two.get(name, ())
            batch_first = len(other) == len(dims) > 0 and dims[0] == 1 and other[0] == 2
            if name in shapes or name not in floats or not batch_first:
                continue  # not a batch-first tensor: its first axis is not the batch at both sizes
            if dims[1:] == other[1:] and all(d > 0 for d in dims[1:]):
                shapes[name] = dims[1:]
    for init in model.graph.initializer:
        shapes.setdefault(init.name, tuple(init.dims[1:]))
    return shapes


def shapes_at_batch(model: onnx.ModelProto, batch: int, rounds: int = 8) -> dict[str, tuple[int, ...]]:
    """Every tensor's whole shape (batch axis included, any element type) with the images' batch fixed,
    where shape inference pins all of it down; initializers too. Reshape targets computed with arithmetic
    that inference does not follow (torch's classic exporter divides a Shape by the window count) are
    evaluated from the shapes found so far, and inference runs again, on a weightless copy."""
    light = _at_batch(_without_large_initializers(model), batch)
    found: dict[str, tuple[int, ...]] = {}
    for _ in range(rounds):
        inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
        found = {init.name: tuple(init.dims) for init in model.graph.initializer}
        for value in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
            dims = value.type.tensor_type.shape.dim
            if value.type.HasField("tensor_type") and all(d.HasField("dim_value") for d in dims):
                found.setdefault(value.name, tuple(d.dim_value for d in dims))
        if not _pin_targets(light, found):
            break
    return found


def _pin_targets(light: onnx.ModelProto, found: dict[str, tuple[int, ...]]) -> int:
    """Reshape targets and Expand shapes (of tensors with known shapes) evaluated and made initializers of
    `light` (a class token expanded to the batch: torch's classic exporter writes Where(Equal(...)))."""
    from onnx.reference import ReferenceEvaluator

    graph = light.graph
    producer = {o: n for n in graph.node for o in n.output}
    order = {id(n): i for i, n in enumerate(graph.node)}
    values = {init.name for init in graph.initializer}
    pinned = 0
    for node in graph.node:
        position = _shape_input(node.op_type, node.domain)
        if position is None or node.output[0] in found or node.input[0] not in found:
            continue
        nodes, shapes = _shape_arithmetic(node.input[position], producer, order, values, found)
        if nodes is None:
            continue
        constants = [numpy_helper.from_array(np.array(dims, np.int64), name) for name, dims in shapes.items()]
        read = {name for n in nodes for name in n.input}
        wanted = [onnx.helper.make_tensor_value_info(node.input[position], 0, None)]
        sub = onnx.helper.make_graph(nodes, "target", [], wanted,
                                     [*constants, *(i for i in graph.initializer if i.name in read)])
        try:
            (target,) = ReferenceEvaluator(onnx.helper.make_model(sub, opset_imports=light.opset_import)).run(None, {})
        except Exception:  # onnx's reference ops raise their own errors: the shape stays unknown, as before
            continue
        name = f"{node.input[position]}/pinned"
        graph.initializer.append(numpy_helper.from_array(np.asarray(target, np.int64), name))
        values.add(name)
        node.input[position] = name
        pinned += 1
    return pinned


@functools.cache
def _shape_input(op_type: str, domain: str) -> int | None:
    """The position of the input the ONNX spec names `shape` (Reshape's target, Expand's shape), or None."""
    try:
        schema = onnx.defs.get_schema(op_type, domain=domain)
    except onnx.defs.SchemaError:
        return None
    names = [formal.name for formal in schema.inputs]
    return names.index("shape") if "shape" in names and names.index("shape") > 0 else None


def _shape_arithmetic(
    name: str,
    producer: dict[str, onnx.NodeProto],
    order: dict[int, int],
    values: set[str],
    found: dict[str, tuple[int, ...]],
) -> tuple[list[onnx.NodeProto] | None, dict[str, tuple[int, ...]]]:
    """The nodes computing `name` from constants and Shapes of tensors with known shapes (each Shape
    replaced by its value), in order; None where it reads any tensor's values."""
    nodes: list[onnx.NodeProto] = []
    shapes: dict[str, tuple[int, ...]] = {}
    stack, seen = [name], set()
    while stack:
        tensor = stack.pop()
        if tensor in seen or tensor in values or not tensor:
            continue
        seen.add(tensor)
        node = producer.get(tensor)
        if node is None:
            return None, {}
        if node.op_type == "Shape":
            if node.input[0] not in found or node.attribute:  # start/end: not written by torch here
                return None, {}
            shapes[tensor] = found[node.input[0]]
            continue
        if len(nodes) > 256:
            return None, {}
        nodes.append(node)
        stack.extend(node.input)
    return sorted(nodes, key=lambda n: order[id(n)]), shapes


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
