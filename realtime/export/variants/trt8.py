"""The TensorRT 8 profile of a contract graph, for JetPack 5 and 6 (TensorRT 8.5 and 8.6).

Their ONNX parser takes uint8 network inputs only in some versions (onnx-tensorrt #400), casts
int64 inputs down to int32 with a warning each, and has no LayerNormalization (release/8.5-GA's
operators.md). So this profile takes a float32 image (0-255, BGR: the runtime casts the frame,
the cast moved out of the graph), int32 targets, gives int32 classes, and writes LayerNormalization
as the ReduceMean, Sub, Mul, Add, Sqrt and Div it stands for. Inside, shape arithmetic stays int64:
the parser casts it down itself, and every value fits in int32.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from realtime import contract
from realtime.export.graph.builder import model_opset, set_metadata
from realtime.export.graph.index import attrs
from realtime.export.graph.passes import reroute_output
from realtime.export.graph.shapes import static_shapes


class ProfileError(ValueError):
    """The graph cannot take this profile (a reader of the image that is not its cast, say)."""


def to_trt8(source: onnx.ModelProto) -> onnx.ModelProto:
    """The TensorRT 8 profile of `source` (a new model; `source` is left as it is)."""
    model = onnx.ModelProto()
    model.CopyFrom(source)
    graph = model.graph
    _float_image(graph)
    _int32_targets(graph)
    _int32_classes(graph)
    decompose_layer_norms(model)
    set_metadata(model, contract.META_PROFILE, contract.PROFILE_TRT8)
    return model


def _float_image(graph: onnx.GraphProto) -> None:
    """The image comes in as float32; the Cast that made it float becomes an Identity."""
    readers = [n for n in graph.node if contract.INPUT_IMAGE in n.input]
    if not all(n.op_type == "Cast" and attrs(n).get("to") == TensorProto.FLOAT for n in readers):
        raise ProfileError("the image is read by more than its cast to float; re-export the graph with gradcam-export")
    for node in readers:
        node.op_type = "Identity"
        del node.attribute[:]
    _input(graph, contract.INPUT_IMAGE).type.tensor_type.elem_type = TensorProto.FLOAT


def _int32_targets(graph: onnx.GraphProto) -> None:
    """int32 targets in; the graph's own arithmetic on them reads an int64 copy."""
    value = next((v for v in graph.input if v.name == contract.INPUT_TARGETS), None)
    if value is None:  # forward-only graphs take no targets
        return
    wide = f"{contract.INPUT_TARGETS}/int64"
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name == contract.INPUT_TARGETS:
                node.input[position] = wide
    cast = onnx.helper.make_node("Cast", [contract.INPUT_TARGETS], [wide], name=f"trt8/{wide}", to=TensorProto.INT64)
    graph.node.insert(0, cast)
    value.type.tensor_type.elem_type = TensorProto.INT32


def _int32_classes(graph: onnx.GraphProto) -> None:
    output = next((o for o in graph.output if o.name == contract.OUT_CLASSES), None)
    if output is None:
        return
    wide = f"{contract.OUT_CLASSES}/int64"
    at = reroute_output(graph, contract.OUT_CLASSES, wide)
    cast = onnx.helper.make_node("Cast", [wide], [contract.OUT_CLASSES], name="trt8/classes", to=TensorProto.INT32)
    graph.node.insert(at, cast)
    output.type.tensor_type.elem_type = TensorProto.INT32


def _input(graph: onnx.GraphProto, name: str) -> onnx.ValueInfoProto:
    return next(v for v in graph.input if v.name == name)


def decompose_layer_norms(model: onnx.ModelProto) -> int:
    """Each LayerNormalization as (x - mean) / sqrt(var + eps) * scale + bias over its axes; returns how many."""
    graph = model.graph
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    if not norms:
        return 0
    shapes = static_shapes(model)
    axes_as_input = model_opset(model) >= 18  # ReduceMean's axes: an attribute up to opset 17, an input after
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for node in norms:
        if any(o in used for o in node.output[1:] if o):
            raise ProfileError(f"{node.name}: its mean or inverse deviation is read; TensorRT 8 has no LayerNorm")
        options = attrs(node)
        axis = int(options.get("axis", -1))
        if axis >= 0:
            if node.input[0] not in shapes:
                raise ProfileError(f"{node.name}: LayerNormalization over axis {axis} of a tensor of unknown rank")
            axis -= len(shapes[node.input[0]]) + 1
        stem = node.name or node.output[0]
        graph.initializer.append(
            numpy_helper.from_array(np.array(float(options.get("epsilon", 1e-5)), np.float32), f"{stem}/epsilon")
        )
        if axes_as_input:
            graph.initializer.append(numpy_helper.from_array(np.arange(axis, 0, dtype=np.int64), f"{stem}/axes"))
        at = list(graph.node).index(node)
        steps = _layer_norm_steps(node, stem, list(range(axis, 0)), axes_as_input)
        graph.node.remove(node)
        for offset, step in enumerate(steps):
            graph.node.insert(at + offset, step)
    return len(norms)


def _layer_norm_steps(node: onnx.NodeProto, stem: str, axes: list[int], axes_as_input: bool) -> list[onnx.NodeProto]:
    x, scale = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None

    def step(op: str, inputs: list[str], suffix: str) -> onnx.NodeProto:
        return onnx.helper.make_node(op, inputs, [f"{stem}/{suffix}"], name=f"{stem}/{suffix}")

    def mean(source: str, suffix: str) -> onnx.NodeProto:
        if axes_as_input:
            return step("ReduceMean", [source, f"{stem}/axes"], suffix)
        made = step("ReduceMean", [source], suffix)
        made.attribute.append(onnx.helper.make_attribute("axes", axes))
        return made

    steps = [
        mean(x, "mean"),
        step("Sub", [x, f"{stem}/mean"], "centred"),
        step("Mul", [f"{stem}/centred", f"{stem}/centred"], "squared"),
        mean(f"{stem}/squared", "variance"),
        step("Add", [f"{stem}/variance", f"{stem}/epsilon"], "variance_eps"),
        step("Sqrt", [f"{stem}/variance_eps"], "deviation"),
        step("Div", [f"{stem}/centred", f"{stem}/deviation"], "normalised"),
        step("Mul", [f"{stem}/normalised", scale], "scaled"),
    ]
    if bias is None:
        steps[-1].output[0] = node.output[0]
    else:
        steps.append(onnx.helper.make_node("Add", [f"{stem}/scaled", bias], [node.output[0]], name=f"{stem}/bias"))
    return steps
