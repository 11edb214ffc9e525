"""The model's own head, from the target to the logits, as a standalone float64 graph for the self-check.

The head may also read tensors that do not depend on the target (a residual around it, a
transformer's class token): they become inputs too, fed with their values from the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from realtime.export.autodiff.head import Head
from realtime.export.checks.portable import GraphCheckError
from realtime.export.graph.index import GraphIndex, producers, topological
from realtime.export.graph.session import cpu_session
from realtime.export.graph.shapes import element_types

LARGE_WEIGHT = 1 << 20  # elements: float weights above this stay float32 in the float64 head


@dataclass(frozen=True)
class HeadModel:
    """The float64 head, and the large float32 weights it takes as inputs (fed, never serialized)."""

    model: onnx.ModelProto
    weights: dict[str, np.ndarray]
    side: tuple[str, ...] = ()  # body tensors the head reads that do not depend on the target


def head_model(model: onnx.ModelProto, head: Head) -> HeadModel:
    """The model's own nodes from the target to the logits, in float64, as a standalone graph.

    A Shape node that reads a body tensor (tf2onnx computes reshape targets that
    way) is replaced by [batch of the target, static dims of that tensor]. Large
    weights (VGG16's fc1) become float32 inputs cast inside the graph: no 800 MB
    float64 copy, and no 400 MB protobuf to serialize for the session.
    """
    producer = producers(model.graph.node)
    inits = {init.name: init for init in model.graph.initializer}
    from_target = _from_target(model, head.target)
    constants = GraphIndex.of(model.graph).constants  # computed from initializers alone
    needed: list[onnx.NodeProto] = []
    side: list[str] = []
    seen: set[str] = {head.target}
    stack = [head.logits]
    while stack:
        name = stack.pop()
        if name in seen or name in inits or not name:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is None:
            raise GraphCheckError(f"the logits depend on {name!r}, which does not come from {head.target!r}")
        if node.op_type == "Shape" and node.input[0] not in from_target:
            needed.extend(_static_shape_nodes(node, head))
            continue
        if name not in from_target and name not in constants:
            side.append(name)  # a value of the forward pass: fed, as a constant of the head
            continue
        if node not in needed:
            needed.append(node)
            stack.extend(node.input)
    inputs_of = {name for node in needed for name in node.input}
    made = {out for node in needed for out in node.output}
    outside = ({name for node in needed for name in node.input} - made) | set(side)
    nodes = [_copy(node) for node in topological(needed, outside)]  # the model's own nodes stay untouched
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    nodes = [lowered for node in nodes for lowered in _in_float64(node, head, opset)]
    # small float weights become float64 here; large ones are fed as float32 inputs and cast inside the graph
    types = element_types(model) if side else {}
    weights, casts, fed, fed_values = [], [], {}, []
    for name, init in inits.items():
        if name not in inputs_of:
            continue
        if init.data_type != TensorProto.FLOAT:
            weights.append(init)
        elif int(np.prod(init.dims)) <= LARGE_WEIGHT:
            weights.append(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), name))
        else:
            fed[name] = numpy_helper.to_array(init)
            fed_values.append(onnx.helper.make_tensor_value_info(name, TensorProto.FLOAT, list(init.dims)))
            casts.append(onnx.helper.make_node("Cast", [name], [f"{name}/f64"], to=TensorProto.DOUBLE))
            for node in nodes:
                node.input[:] = [f"{name}/f64" if i == name else i for i in node.input]
    graph = onnx.helper.make_graph(
        casts + nodes,
        "head",
        [
            onnx.helper.make_tensor_value_info(head.target, TensorProto.DOUBLE, None),
            *fed_values,
            *(onnx.helper.make_tensor_value_info(name, _side_type(types.get(name)), None) for name in side),
        ],
        [onnx.helper.make_tensor_value_info(head.logits, TensorProto.DOUBLE, None)],
        weights,
    )
    for node in graph.node[len(casts) :]:
        for attr in node.attribute:
            if attr.name in ("to", "stash_type") and attr.i == TensorProto.FLOAT:  # LayerNorm's statistics too
                attr.i = TensorProto.DOUBLE
            if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float64)))
    head_graph = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    head_graph.ir_version = model.ir_version  # make_model writes the newest IR, which onnxruntime may not read
    return HeadModel(head_graph, fed, tuple(side))


def _in_float64(node: onnx.NodeProto, head: Head, opset: int) -> list[onnx.NodeProto]:
    """LayerNormalization and Gelu written out (the runners compute LayerNorm's statistics in float32
    whatever the input, and expand Gelu with their float32 Erf)."""
    if node.op_type == "Gelu":
        return _gelu(node)
    if node.op_type != "LayerNormalization":
        return [node]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    rank = len(head.shapes[node.input[0]]) + 1
    axes = list(range(int(attributes.get("axis", -1)) % rank, rank))
    stem, x = node.output[0], node.input[0]
    eps = numpy_helper.from_array(np.asarray(attributes.get("epsilon", 1e-5), np.float64), f"{stem}/eps")
    listed = numpy_helper.from_array(np.asarray(axes, np.int64), f"{stem}/axes")

    def mean(source: str, out: str) -> list[onnx.NodeProto]:
        if opset >= 18:
            return [onnx.helper.make_node("ReduceMean", [source, f"{stem}/axes"], [out], keepdims=1)]
        return [onnx.helper.make_node("ReduceMean", [source], [out], axes=axes, keepdims=1)]

    constants = [onnx.helper.make_node("Constant", [], [t.name], value=t) for t in (eps, listed)]
    out = [
        *constants, *mean(x, f"{stem}/mean"),
        onnx.helper.make_node("Sub", [x, f"{stem}/mean"], [f"{stem}/dev"]),
        onnx.helper.make_node("Mul", [f"{stem}/dev", f"{stem}/dev"], [f"{stem}/square"]),
        *mean(f"{stem}/square", f"{stem}/var"),
        onnx.helper.make_node("Add", [f"{stem}/var", eps.name], [f"{stem}/var_eps"]),
        onnx.helper.make_node("Sqrt", [f"{stem}/var_eps"], [f"{stem}/std"]),
        onnx.helper.make_node("Div", [f"{stem}/dev", f"{stem}/std"], [f"{stem}/normal"]),
        onnx.helper.make_node("Mul", [f"{stem}/normal", node.input[1]], [f"{stem}/scaled" if len(node.input) > 2 else stem]),  # noqa: E501
    ]  # fmt: skip
    if len(node.input) > 2 and node.input[2]:
        out.append(onnx.helper.make_node("Add", [f"{stem}/scaled", node.input[2]], [stem]))
    return out


def _gelu(node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """0.5 x (1 + erf(x / sqrt 2)), or with approximate="tanh" 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    stem, x = node.output[0], node.input[0]
    tanh = any(a.name == "approximate" and a.s == b"tanh" for a in node.attribute)
    values = {"half": 0.5, "one": 1.0, "root_half": 0.5**0.5, "c": (2 / np.pi) ** 0.5, "k": 0.044715}
    out = [
        onnx.helper.make_node("Constant", [], [f"{stem}/{k}"], value=numpy_helper.from_array(np.asarray(v, np.float64)))
        for k, v in values.items()
    ]
    if tanh:
        out += [
            onnx.helper.make_node("Mul", [x, x], [f"{stem}/x2"]),
            onnx.helper.make_node("Mul", [f"{stem}/x2", x], [f"{stem}/x3"]),
            onnx.helper.make_node("Mul", [f"{stem}/x3", f"{stem}/k"], [f"{stem}/kx3"]),
            onnx.helper.make_node("Add", [x, f"{stem}/kx3"], [f"{stem}/inner"]),
            onnx.helper.make_node("Mul", [f"{stem}/inner", f"{stem}/c"], [f"{stem}/scaled"]),
            onnx.helper.make_node("Tanh", [f"{stem}/scaled"], [f"{stem}/shape"]),
        ]
    else:
        out += [
            onnx.helper.make_node("Mul", [x, f"{stem}/root_half"], [f"{stem}/scaled"]),
            onnx.helper.make_node("Erf", [f"{stem}/scaled"], [f"{stem}/shape"]),
        ]
    return [
        *out,
        onnx.helper.make_node("Add", [f"{stem}/shape", f"{stem}/one"], [f"{stem}/gate"]),
        onnx.helper.make_node("Mul", [x, f"{stem}/gate"], [f"{stem}/gated"]),
        onnx.helper.make_node("Mul", [f"{stem}/gated", f"{stem}/half"], [stem]),
    ]


def _side_type(elem: int | None) -> int:
    """Float side inputs run in float64 like the rest of the head; shape tensors stay int64."""
    return TensorProto.DOUBLE if elem in (None, TensorProto.FLOAT, TensorProto.DOUBLE) else elem


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _from_target(model: onnx.ModelProto, target: str) -> set[str]:
    reached = {target}
    for node in model.graph.node:
        if any(i in reached for i in node.input):
            reached.update(node.output)
    return reached


def _static_shape_nodes(node: onnx.NodeProto, head: Head) -> list[onnx.NodeProto]:
    """Nodes computing Shape(body tensor) as Concat(batch of the target, its static dims)."""
    dims = head.shapes.get(node.input[0])
    if dims is None:
        raise GraphCheckError(f"the head reads the shape of {node.input[0]!r}, whose size is not static")
    out = node.output[0]
    full = [
        onnx.helper.make_node("Shape", [head.target], [f"{out}/batch_all"]),
        onnx.helper.make_node(
            "Constant", [], [f"{out}/dims"], value=numpy_helper.from_array(np.asarray(dims, np.int64))
        ),
        onnx.helper.make_node(
            "Constant", [], [f"{out}/zero"], value=numpy_helper.from_array(np.asarray([0], np.int64))
        ),
        onnx.helper.make_node("Constant", [], [f"{out}/one"], value=numpy_helper.from_array(np.asarray([1], np.int64))),
        onnx.helper.make_node("Slice", [f"{out}/batch_all", f"{out}/zero", f"{out}/one"], [f"{out}/batch"]),
    ]
    attributes = {a.name: a.i for a in node.attribute}
    if not attributes:
        return [*full, onnx.helper.make_node("Concat", [f"{out}/batch", f"{out}/dims"], [out], axis=0)]
    full.append(onnx.helper.make_node("Concat", [f"{out}/batch", f"{out}/dims"], [f"{out}/whole"], axis=0))
    start, end = attributes.get("start", 0), attributes.get("end", len(dims) + 1)
    full += [
        onnx.helper.make_node(
            "Constant", [], [f"{out}/s"], value=numpy_helper.from_array(np.asarray([start], np.int64))
        ),
        onnx.helper.make_node("Constant", [], [f"{out}/e"], value=numpy_helper.from_array(np.asarray([end], np.int64))),
        onnx.helper.make_node("Slice", [f"{out}/whole", f"{out}/s", f"{out}/e"], [out]),
    ]
    return full


def float64_runner(head: HeadModel, target: str, side: dict[str, np.ndarray]) -> Any:
    """onnxruntime where it has float64 kernels for every head op (fast), else onnx's numpy reference;
    `side` holds the side inputs' values for one copy of the batch, repeated to the batch run."""

    def feeds(x: np.ndarray) -> dict[str, np.ndarray]:
        given = {}
        for name in head.side:
            value = side[name].astype(np.float64) if side[name].dtype.kind == "f" else side[name]
            if value.dtype.kind == "f":  # a batch-first activation: one copy per stacked batch
                value = np.concatenate([value] * (len(x) // len(value)))
            given[name] = value
        return {target: x, **head.weights, **given}

    try:
        session = cpu_session(head.model, optimize=False)  # no fused float32 kernels
        return lambda x: session.run(None, feeds(x))[0]
    except Exception:  # a float64 kernel is missing (HardSwish, ...): the reference evaluator has them all
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(head.model, new_ops=[_erf_float64()])
        return lambda x: next(iter(evaluator.run(None, feeds(x))))


def side_values(
    model: onnx.ModelProto, names: tuple[str, ...], image: np.ndarray, targets: np.ndarray
) -> dict[str, np.ndarray]:
    """The forward's values of `names` for this batch, from the contract graph in memory with them as outputs."""
    if not names:
        return {}

    from realtime import contract

    session = cpu_session(model, outputs=names)
    feeds = {contract.INPUT_IMAGE: image, contract.INPUT_TARGETS: targets}
    return dict(zip(names, session.run(list(names), feeds), strict=True))


def _erf_float64() -> type:
    """onnx's reference Erf rounds through float32 (np.vectorize(erf, otypes="f")): GELU's derivative
    would be off by 1e-3 at the self-check's step. This one stays in float64."""
    from math import erf

    from onnx.reference.op_run import OpRun

    vectorized = np.vectorize(erf, otypes=[np.float64])

    class Erf(OpRun):
        def _run(self, x: np.ndarray) -> tuple[np.ndarray]:
            return (vectorized(x).astype(x.dtype),)

    return Erf
