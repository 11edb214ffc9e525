"""Turn a forward classifier graph into a contract-v1 Grad-CAM graph.

In: the model's own float input and logits. Out: `image` uint8 [N,H,W,3] BGR
and `targets` int64 [N,K] in; logits, probabilities, classes, activations
[N,h,w,C], weights [N,K,C], cam [N,K,h,w] and, for `full`, gradients
[N,K,h,w,C] out. Preprocessing is baked in, so the runtime only feeds frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import onnx
from onnx import TensorProto

from realtime import contract
from realtime.export.autodiff.backward import build_backward
from realtime.export.autodiff.head import Head
from realtime.export.graph.builder import GraphBuilder
from realtime.export.graph.layout import NCHW
from realtime.export.ops.context import RuleError
from realtime.export.preprocessing import Preprocess


def value_info(name: str, elem: int, dims: list[int | str]) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, elem, dims)


def prepend_preprocessing(b: GraphBuilder, model_input: str, layout: str, spec: Preprocess) -> None:
    """image (uint8 BGR NHWC) -> the tensor the model used to take as its input.

    Channel planes first: the channel flip then copies three contiguous planes and the
    normalisation broadcasts over them (a Gather on the last axis of NHWC took 0.6 ms of
    MobileNetV3's 6.8 ms). For an NHWC model the transpose back meets the transpose its
    own first convolution makes, and onnxruntime cancels the pair.
    """
    x = b.transpose(b.cast(contract.INPUT_IMAGE), [0, 3, 1, 2])
    if spec.channels == "rgb":
        x = b.op("Gather", [x, b.const(np.array([2, 1, 0], np.int64), "rgb")], axis=1)
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)
    x = b.op("Div", [b.op("Sub", [x, b.const(mean, "mean")]), b.const(std, "std")])
    if layout != NCHW:
        x = b.transpose(x, [0, 2, 3, 1])
    b.named("Identity", [x], model_input)


def _classes(b: GraphBuilder, logits: str, num_classes: int) -> str:
    """-1 in column k of targets means the class ranked k-th; TopK's K is a small constant (TensorRT wants
    a constant, and sorting all 1000 ImageNet logits cost 64 us a frame, 1% of MobileNetV3's forward)."""
    ranks = min(num_classes, contract.MAX_TARGETS)
    _, ranked = b.ops("TopK", [logits, b.ints([ranks])], 2, axis=-1, largest=1, sorted=1)
    k = b.slice(b.op("Shape", [contract.INPUT_TARGETS]), [1], [2], [0])
    top = b.slice(ranked, b.ints([0]), k, [1])
    wanted = b.op("GreaterOrEqual", [contract.INPUT_TARGETS, b.const(np.int64(0))])
    return b.op("Where", [wanted, contract.INPUT_TARGETS, top])


def normalised_cam(
    b: GraphBuilder, activations_nchw: str, weights: str, shape: tuple[int, int, int], output: str
) -> None:
    """ReLU(sum_c w_c A_c) over its max per map; an all-zero map stays zero. `shape`: the map's (h, w, c)."""
    h, w, c = shape
    flat = b.reshape(activations_nchw, [0, c, h * w])
    raw = b.op("Relu", [b.op("MatMul", [weights, flat])])  # [N,K,hw]
    maps = b.reshape(raw, [0, 0, h, w])
    peak = b.reduce("ReduceMax", maps, [2, 3])
    safe = b.op("Max", [peak, b.const(np.float32(1e-30), "tiny")])  # ReLU'd maps: a zero peak means a zero map
    b.named("Div", [maps, safe], output)


CONTRACT_NAMES = frozenset(
    (contract.INPUT_IMAGE, contract.INPUT_TARGETS, *contract.REQUIRED_OUTPUTS, contract.OUT_GRADIENTS)
)


def free_names(b: GraphBuilder, taken: set[str], names: frozenset[str] = CONTRACT_NAMES) -> dict[str, str]:
    """Rename the model's own tensors that carry a contract name ('logits', 'image', often); old -> new."""
    renamed = {}
    for name in sorted(taken & names):
        internal = b.fresh(f"model_{name}")
        for node in b.graph.node:
            node.input[:] = [internal if n == name else n for n in node.input]
            node.output[:] = [internal if n == name else n for n in node.output]
        renamed[name] = internal
    return renamed


def _renamed(head: Head, renamed: dict[str, str]) -> Head:
    shapes = {**head.shapes, **{new: head.shapes[old] for old, new in renamed.items() if old in head.shapes}}
    return replace(
        head, target=renamed.get(head.target, head.target), logits=renamed.get(head.logits, head.logits), shapes=shapes
    )


def channels_last(b: GraphBuilder, x: str, output: str, nchw: bool, rank: int = 5) -> None:
    """Name `x` as an output with its channel axis last ([N,h,w,C], or [N,K,h,w,C] for gradients)."""
    if nchw:
        b.named("Transpose", [x], output, perm=[*range(rank - 3), rank - 2, rank - 1, rank - 3])
    else:
        b.named("Identity", [x], output)


def _layer_outputs(b: GraphBuilder, head: Head, gradients: str | None, spatial_sum: str, layer: int) -> list:
    """activations, weights, cam (and gradients) of one explained layer, under that layer's names."""
    h, w, c = head.map_shape
    nchw = head.layout == NCHW
    name = lambda output: contract.layer_output(output, layer)  # noqa: E731
    activations_nchw = head.target if nchw else b.transpose(head.target, [0, 3, 1, 2])
    channels_last(b, head.target, name(contract.OUT_ACTIVATIONS), nchw, rank=4)
    weights = b.op("Mul", [spatial_sum, b.const(np.float32(1.0 / (h * w)))])
    b.named("Identity", [weights], name(contract.OUT_WEIGHTS))
    normalised_cam(b, activations_nchw, weights, head.map_shape, name(contract.OUT_CAM))
    outputs = [
        value_info(name(contract.OUT_ACTIVATIONS), TensorProto.FLOAT, ["N", h, w, c]),
        value_info(name(contract.OUT_WEIGHTS), TensorProto.FLOAT, ["N", "K", c]),
        value_info(name(contract.OUT_CAM), TensorProto.FLOAT, ["N", "K", h, w]),
    ]
    if gradients is not None:
        channels_last(b, gradients, name(contract.OUT_GRADIENTS), nchw)
        outputs.append(value_info(name(contract.OUT_GRADIENTS), TensorProto.FLOAT, ["N", "K", h, w, c]))
    return outputs


def _input_output(b: GraphBuilder, head: Head, gradient: str, output: str) -> list:
    """saliency or guided: a gradient at the model input, [N,K,H,W,channels] in the model's channel order."""
    h, w, c = head.map_shape
    channels_last(b, gradient, output, head.layout == NCHW)
    return [value_info(output, TensorProto.FLOAT, ["N", "K", h, w, c])]


def lowest(heads: Sequence[Head]) -> Head:
    """The head that reaches down to every other head's target (the one with the most nodes)."""
    deepest = max(heads, key=lambda h: len(h.nodes))
    reached = {deepest.target} | {n.output[0] for n in deepest.nodes}
    for head in heads:
        if head.target not in reached:
            raise RuleError(
                f"{head.target!r} is not on the way from {deepest.target!r} to the logits; pick layers on one path"
            )
    return deepest


def build(
    model: onnx.ModelProto,
    heads: Sequence[Head],
    input_name: str,
    input_layout: str,
    preprocess: Preprocess,
    gradients: str,
    metadata: Mapping[str, str],
    input_head: Head | None = None,
    input_gradients: str = "",
) -> onnx.ModelProto:
    """Rewrite `model` in place into the contract graph (nodes are appended; sort them afterwards).

    heads[0] gives version 1's outputs; further heads (several --layer) and `input_head`
    (--input-gradients) add version 2's. One backward pass serves every layer.
    """
    graph = model.graph
    model_input = next(v for v in graph.input if v.name == input_name)
    dims = [d.dim_value for d in model_input.type.tensor_type.shape.dim]
    height, width = (dims[2], dims[3]) if input_layout == NCHW else (dims[1], dims[2])
    del graph.input[:], graph.output[:], graph.value_info[:]
    graph.input.extend(
        [
            value_info(contract.INPUT_IMAGE, TensorProto.UINT8, [contract.DIM_BATCH, height, width, 3]),
            value_info(contract.INPUT_TARGETS, TensorProto.INT64, [contract.DIM_BATCH, contract.DIM_TARGETS]),
        ]
    )
    b = GraphBuilder(model)
    renamed = free_names(b, {name for node in graph.node for name in node.output} | {input_name})
    heads = [_renamed(h, renamed) for h in heads]
    input_head = _renamed(input_head, renamed) if input_head is not None else None
    input_name = renamed.get(input_name, input_name)
    prepend_preprocessing(b, input_name, input_layout, preprocess)
    # graph outputs are leaves (Identity copies) so that no node reads an output: converters that
    # cast outputs (fp16 with fp32 outputs, say) would otherwise feed the cast value back into the graph
    first = heads[0]
    b.named("Identity", [first.logits], contract.OUT_LOGITS)
    b.named("Softmax", [first.logits], contract.OUT_PROBABILITIES, axis=-1)
    outputs = [
        value_info(contract.OUT_LOGITS, TensorProto.FLOAT, ["N", first.num_classes]),
        value_info(contract.OUT_PROBABILITIES, TensorProto.FLOAT, ["N", first.num_classes]),
    ]
    if gradients == contract.GRADIENTS_NONE:
        h, w, c = first.map_shape
        channels_last(b, first.target, contract.OUT_ACTIVATIONS, first.layout == NCHW, rank=4)
        outputs.append(value_info(contract.OUT_ACTIVATIONS, TensorProto.FLOAT, ["N", h, w, c]))
    else:
        classes = _classes(b, first.logits, first.num_classes)
        b.named("Identity", [classes], contract.OUT_CLASSES)
        outputs.append(value_info(contract.OUT_CLASSES, TensorProto.INT64, ["N", "K"]))
        saliency = input_head if input_gradients in ("saliency", "both") else None
        guided = input_head if input_gradients in ("guided", "both") else None
        if len(heads) == 1 and saliency is None:
            # pooled stops at the first Dense through a 49x smaller kernel: enough for Guided Grad-CAM's weights
            backward = build_backward(b, first, classes, pooled=gradients == contract.GRADIENTS_POOLED)
            full = backward.gradients if gradients == contract.GRADIENTS_FULL else None
            outputs += _layer_outputs(b, first, full, backward.spatial_sum, 0)
        else:
            deepest = lowest([*heads, *([saliency] if saliency else [])])
            wanted = [h.target for h in heads] + ([saliency.target] if saliency else [])
            backward = build_backward(b, deepest, classes, pooled=False, capture=wanted)
            for i, head in enumerate(heads):
                grad = backward.captured[head.target]
                total = b.reduce("ReduceSum", grad, [a + 1 for a in head.spatial_axes()], keepdims=False)
                outputs += _layer_outputs(b, head, grad, total, i)
            if saliency is not None:
                outputs += _input_output(b, saliency, backward.captured[saliency.target], contract.OUT_SALIENCY)
        if guided is not None:
            guided_pass = build_backward(b, guided, classes, pooled=False, guided=True)
            assert guided_pass.gradients is not None
            outputs += _input_output(b, guided, guided_pass.gradients, contract.OUT_GUIDED)
    graph.output.extend(outputs)
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model
