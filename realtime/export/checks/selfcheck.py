"""The backward against float64 finite differences of the model's own head, before a graph is written.

The self-check owes nothing to how the backward was built: it re-runs the
model's own head nodes in float64 (onnxruntime, or onnx's numpy reference
evaluator) on the activations the graph returned, nudges them along random
directions and compares the change of the explained logits with what the
graph's gradients (or, for `pooled`, its channel weights) predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from realtime import contract
from realtime.export.autodiff.head import Head
from realtime.export.checks.portable import GraphCheckError
from realtime.export.graph.index import producers, topological
from realtime.export.graph.layout import NCHW
from realtime.export.messages import first_line


class SelfCheckError(RuntimeError):
    """The built graph is invalid or disagrees with finite differences; no file was written."""


LARGE_WEIGHT = 1 << 20  # elements: float weights above this stay float32 in the float64 head


@dataclass(frozen=True)
class HeadModel:
    """The float64 head, and the large float32 weights it takes as inputs (fed, never serialized)."""

    model: onnx.ModelProto
    weights: dict[str, np.ndarray]


def head_model(model: onnx.ModelProto, head: Head) -> HeadModel:
    """The model's own nodes from the target to the logits, in float64, as a standalone graph.

    A Shape node that reads a body tensor (tf2onnx computes reshape targets that
    way) is replaced by [batch of the target, static dims of that tensor]. Large
    weights (VGG16's fc1) become float32 inputs cast inside the graph: no 800 MB
    float64 copy, and no 400 MB protobuf to serialize for the session.
    """
    producer = producers(model.graph.node)
    inits = {init.name: init for init in model.graph.initializer}
    needed: list[onnx.NodeProto] = []
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
        if node.op_type == "Shape" and node.input[0] not in _from_target(model, head.target):
            needed.extend(_static_shape_nodes(node, head))
            continue
        if node not in needed:
            needed.append(node)
            stack.extend(node.input)
    inputs_of = {name for node in needed for name in node.input}
    made = {out for node in needed for out in node.output}
    outside = {name for node in needed for name in node.input} - made
    nodes = [_copy(node) for node in topological(needed, outside)]  # the model's own nodes stay untouched
    # small float weights become float64 here; large ones are fed as float32 inputs and cast inside the graph
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
        [onnx.helper.make_tensor_value_info(head.target, TensorProto.DOUBLE, None), *fed_values],
        [onnx.helper.make_tensor_value_info(head.logits, TensorProto.DOUBLE, None)],
        weights,
    )
    for node in graph.node[len(casts) :]:
        for attr in node.attribute:
            if attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.DOUBLE
            if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float64)))
    head_graph = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    head_graph.ir_version = model.ir_version  # make_model writes the newest IR, which onnxruntime may not read
    return HeadModel(head_graph, fed)


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


@dataclass(frozen=True)
class SelfCheck:
    """The graph's outputs against float64 finite differences of the model's own head."""

    logits_rel: float  # the graph's logits against the float64 head on the same activations
    derivative_rel: float  # directional derivative: graph against central differences
    cam_abs: float  # the cam output against ReLU(sum_c w_c A_c) / max worked out in numpy

    def ok(self, tolerance: float = 1e-4) -> bool:
        return self.logits_rel <= tolerance and self.derivative_rel <= tolerance and self.cam_abs <= tolerance

    def describe(self) -> str:
        return (
            f"logits {self.logits_rel:.1e}, directional derivative {self.derivative_rel:.1e} (relative), "
            f"cam {self.cam_abs:.1e}"
        )


def self_check(
    forward: onnx.ModelProto,
    head: Head,
    outputs: dict[str, np.ndarray],
    directions: int = 2,
    seed: int = 7,
    stacked: bool = True,
) -> SelfCheck:
    """Compare the graph's `outputs` (for one batch) with finite differences of the forward's head.

    With `stacked`, the head runs once, on the activations and every nudged copy stacked along the
    batch axis; a graph whose batch is baked in (stacked=False) runs them one by one.
    """
    run_head = _float64_runner(head_model(forward, head), head.target)
    activations = outputs[contract.OUT_ACTIVATIONS].astype(np.float64)
    x0 = activations.transpose(0, 3, 1, 2) if head.layout == NCHW else activations
    classes = outputs[contract.OUT_CLASSES]
    rng = np.random.default_rng(seed)
    gradients = outputs.get(contract.OUT_GRADIENTS)
    step = 1e-8 * max(float(np.abs(x0).max()), 1.0)  # small: a ReLU kink inside the step breaks the difference
    nudges, expected = [], []
    for turn in range(directions):
        coefficients = rng.standard_normal(classes.shape)
        if gradients is not None and turn % 2 == 0:
            # any direction, through the full gradient; zero where A is zero, because a max-pool window
            # of ReLU zeros is a tie that a non-uniform nudge breaks (the function has no derivative there)
            direction_nhwc = rng.standard_normal(activations.shape) * (activations != 0)
            predicted = np.einsum("nk,nkhwc,nhwc->", coefficients, gradients.astype(np.float64), direction_nhwc)
            magnitude = np.einsum("nk,nkhwc,nhwc->", np.abs(coefficients), np.abs(gradients), np.abs(direction_nhwc))
        else:  # constant over space per channel: sees only the channel weights, and keeps every tie a tie
            per_channel = rng.standard_normal((activations.shape[0], activations.shape[3]))
            direction_nhwc = np.broadcast_to(per_channel[:, None, None, :], activations.shape)
            area = activations.shape[1] * activations.shape[2]
            weights = outputs[contract.OUT_WEIGHTS].astype(np.float64)
            predicted = area * np.einsum("nk,nkc,nc->", coefficients, weights, per_channel)
            magnitude = area * np.einsum("nk,nkc,nc->", np.abs(coefficients), np.abs(weights), np.abs(per_channel))
        direction = direction_nhwc.transpose(0, 3, 1, 2) if head.layout == NCHW else direction_nhwc
        nudges += [x0 + step * direction, x0 - step * direction]
        expected.append((coefficients, predicted, magnitude))
    try:
        if stacked:
            logits = np.asarray(run_head(np.concatenate([x0, *nudges])), np.float64).reshape(
                1 + len(nudges), len(x0), -1
            )
        else:
            logits = np.stack([np.asarray(run_head(x), np.float64) for x in (x0, *nudges)])  # [evaluation, N, classes]
    except Exception as exc:  # onnxruntime's or the reference evaluator's own errors
        raise GraphCheckError(
            f"the model's own head does not run in float64 for the self-check ({first_line(exc)})"
        ) from exc
    logits_rel = _rel(outputs[contract.OUT_LOGITS], logits[0])
    worst = 0.0
    for turn, (coefficients, predicted, magnitude) in enumerate(expected):
        up, down = (float((coefficients * np.take_along_axis(logits[1 + 2 * turn + d], classes, axis=1)).sum())
                    for d in (0, 1))  # fmt: skip
        measured = (up - down) / (2 * step)
        worst = max(worst, abs(measured - predicted) / max(magnitude, 1e-30))
    cam = np.maximum(np.einsum("nhwc,nkc->nkhw", activations, outputs[contract.OUT_WEIGHTS].astype(np.float64)), 0)
    peak = cam.max(axis=(2, 3), keepdims=True)
    cam = cam / np.where(peak > 0, peak, 1)
    return SelfCheck(logits_rel, worst, float(np.abs(outputs[contract.OUT_CAM] - cam).max()))


def _float64_runner(head: HeadModel, target: str) -> Any:
    """onnxruntime where it has float64 kernels for every head op (fast), else onnx's numpy reference."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no fused float32 kernels
        session = ort.InferenceSession(head.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {target: x, **head.weights})[0]
    except Exception:  # a float64 kernel is missing (HardSwish, ...): the reference evaluator has them all
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(head.model)
        return lambda x: next(iter(evaluator.run(None, {target: x, **head.weights})))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def check_layers(
    path: Path, model: onnx.ModelProto, heads: Sequence[Head], layers: Sequence[str], image: np.ndarray,
    targets: np.ndarray, stacked: bool = True,
) -> SelfCheck:  # fmt: skip
    """Every explained layer's outputs of the written graph `path` against its own head; the first's report."""
    from realtime.export.checks.run import run_onnx

    try:
        outputs = run_onnx(path, image, targets)
    except Exception as exc:  # onnxruntime's own error types: the graph cannot run its test batch
        raise SelfCheckError(f"the built graph does not run on the test batch: {first_line(exc)}") from exc
    reports = []
    for i, layer_head in enumerate(heads):
        named = {k: outputs[contract.layer_output(k, i)] for k in contract.LAYER_OUTPUTS if k in outputs}
        try:
            report = self_check(model, layer_head, {**outputs, **named}, stacked=stacked)
        except GraphCheckError as exc:
            raise SelfCheckError(str(exc)) from exc
        if not report.ok():
            where = f" at {layers[i]!r}" if len(heads) > 1 else ""
            raise SelfCheckError(f"the graph disagrees with finite differences{where}: {report.describe()}")
        reports.append(report)
    return reports[0]
