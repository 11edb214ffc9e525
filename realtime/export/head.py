"""The classifier head of an ONNX graph: the nodes between a target tensor and the logits.

Pure graph analysis, no arithmetic: which tensor to explain by default, its
layout, the differentiable nodes after it in topological order, and the static
shapes the derivative rules need. Refusals name the node and what would work.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import onnx

from realtime.export.shapes import static_shapes

NCHW, NHWC = "NCHW", "NHWC"

# ops whose outputs carry no gradient: shapes, indices, comparisons
NON_DIFFERENTIABLE = frozenset(
    {"Shape", "Size", "ArgMax", "ArgMin", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not",
     "And", "Or", "ConstantOfShape", "Range", "NonZero", "Floor", "Ceil", "Round", "Sign"}
)  # fmt: skip
# a tensor made by one of these is "the pooling", not a layer to explain by default
POOLING_AND_PLUMBING = frozenset(
    {"MaxPool", "AveragePool", "Transpose", "Identity", "Reshape", "Dropout", "Flatten", "Squeeze", "Unsqueeze"}
)
CHANNEL_FIRST_OPS = frozenset(
    {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization", "InstanceNormalization", "Resize",
     "GlobalAveragePool", "GlobalMaxPool", "LpPool", "DepthToSpace", "SpaceToDepth"}
)  # fmt: skip


class HeadError(ValueError):
    """The graph after the target tensor cannot be differentiated here; the message says why and what would work."""


@dataclass(frozen=True)
class GraphIndex:
    """Who makes and who reads each tensor, and which tensors are constants."""

    producer: Mapping[str, onnx.NodeProto]
    consumers: Mapping[str, tuple[onnx.NodeProto, ...]]
    constants: frozenset[str]
    order: Mapping[str, int]  # node name -> position in a topological order

    @staticmethod
    def of(graph: onnx.GraphProto) -> GraphIndex:
        producer: dict[str, onnx.NodeProto] = {}
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.output:
                producer[name] = node
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        constants = {init.name for init in graph.initializer}
        for node in graph.node:  # topological: a node of constants is a constant
            if node.op_type == "Constant" or (node.input and all(i in constants for i in node.input if i)):
                constants.update(node.output)
        order = {node.name: i for i, node in enumerate(graph.node)}
        return GraphIndex(producer, {k: tuple(v) for k, v in consumers.items()}, frozenset(constants), order)

    def ancestors(self, name: str) -> set[str]:
        """Every tensor `name` is computed from (including itself)."""
        seen, queue = {name}, deque([name])
        while queue:
            node = self.producer.get(queue.popleft())
            for parent in node.input if node is not None else ():
                if parent and parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        return seen


@dataclass(frozen=True)
class Head:
    """What the backward builder needs: the target, its layout, the head nodes and their shapes."""

    target: str
    layout: str
    logits: str
    nodes: tuple[onnx.NodeProto, ...]
    shapes: Mapping[str, tuple[int, ...]]  # static dims after the batch axis
    num_classes: int

    @property
    def map_shape(self) -> tuple[int, int, int]:
        """(h, w, channels) of the target."""
        d = self.shapes[self.target]
        return (d[1], d[2], d[0]) if self.layout == NCHW else (d[0], d[1], d[2])

    def spatial_axes(self) -> tuple[int, int]:
        return (2, 3) if self.layout == NCHW else (1, 2)


def _differentiable_positions(node: onnx.NodeProto) -> tuple[int, ...]:
    """Inputs of `node` that a gradient can flow into (shape and parameter inputs cannot)."""
    if node.op_type in ("Add", "Sub", "Mul", "MatMul", "Sum", "Concat", "Max", "Min"):
        return tuple(range(len(node.input)))
    return (0,)


def layout_of(model: onnx.ModelProto, index: GraphIndex, name: str, input_layout: str) -> str | None:
    """NCHW or NHWC for a 4-D tensor, from the ops that made it; None when nothing says."""
    graph_inputs = {value.name for value in model.graph.input}
    seen: set[str] = set()
    queue = deque([name])
    while queue:
        tensor = queue.popleft()
        if tensor in seen:
            continue
        seen.add(tensor)
        if tensor in graph_inputs:
            return input_layout
        node = index.producer.get(tensor)
        if node is None:
            continue
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm == [0, 2, 3, 1]:
                return NHWC
            if perm == [0, 3, 1, 2]:
                return NCHW
            return None
        if node.op_type in CHANNEL_FIRST_OPS:
            return NCHW
        if node.op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "MatMul", "Gemm", "LayerNormalization"):
            return None
        queue.extend(i for i in node.input if i and i not in index.constants)
    return None


def resolve_logits(model: onnx.ModelProto, index: GraphIndex) -> str:
    """The graph's first output, or the input of a trailing Softmax (Grad-CAM explains logits)."""
    name = model.graph.output[0].name
    node = index.producer.get(name)
    while node is not None and node.op_type in ("Softmax", "Identity"):
        name = node.input[0]
        node = index.producer.get(name)
    return name


def candidates(model: onnx.ModelProto, index: GraphIndex, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """4-D tensors with spatial extent > 1 that the logits depend on, in topological order."""
    logits = resolve_logits(model, index)
    needed = index.ancestors(logits)
    found = []
    for node in model.graph.node:
        for name in node.output:
            dims = shapes.get(name)
            if name in needed and name not in index.constants and dims and len(dims) == 3 and _spatial(dims) > 1:
                found.append(name)
    return found


def _spatial(dims: tuple[int, ...]) -> int:
    """Spatial size of [C,H,W] or [H,W,C] dims: the smaller of the two readings is safe for '> 1'."""
    return min(dims[1] * dims[2], dims[0] * dims[1])


def default_target(model: onnx.ModelProto, index: GraphIndex, shapes: Mapping[str, tuple[int, ...]]) -> str:
    """The last candidate not made by pooling or plumbing: VGG's last conv ReLU, ResNet's layer4 output."""
    found = [n for n in candidates(model, index, shapes) if index.producer[n].op_type not in POOLING_AND_PLUMBING]
    if not found:
        raise HeadError("the graph has no 4-D feature map with spatial extent > 1 before its logits; pass --layer")
    return found[-1]


def _alias(index: GraphIndex, target: str, needed: set[str]) -> tuple[str, list[int] | None]:
    """A target off the logits' path (a layout Transpose or Identity of one on it) moves to its source."""
    perm: list[int] | None = None
    while target not in needed:
        node = index.producer.get(target)
        if node is None or node.op_type not in ("Transpose", "Identity"):
            raise HeadError(f"the logits do not depend on {target!r}; pick a tensor from --list-layers")
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        target = node.input[0]
    return target, perm


def extract(
    model: onnx.ModelProto,
    target: str,
    input_layout: str,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    supported: Iterable[str] = (),
    target_layout: str | None = None,
) -> Head:
    """The head after `target`; refuses heads with ops outside `supported` or inputs from elsewhere in the body.

    `target_layout` is the target's layout when the caller knows it (a Keras layer is NHWC);
    otherwise the ops that made it tell.
    """
    index = GraphIndex.of(model.graph)
    shapes = static_shapes(model) if shapes is None else shapes
    logits = resolve_logits(model, index)
    needed = index.ancestors(logits)
    target, perm = _alias(index, target, needed)
    dims = shapes.get(target)
    if dims is None or len(dims) != 3:
        raise HeadError(f"tensor {target!r} has shape {dims}; Grad-CAM needs a static 4-D [N,C,H,W] or [N,H,W,C] map")
    layout = _aliased_layout(target_layout, perm) if target_layout else layout_of(model, index, target, input_layout)
    if layout is None:
        raise HeadError(f"cannot tell whether {target!r} is NCHW or NHWC; its producers do not say")
    logit_dims = shapes.get(logits)
    if logit_dims is None or len(logit_dims) != 1:
        raise HeadError(f"the model's output {logits!r} has shape {logit_dims}; a classifier ends in [N, classes]")

    body_values = _depends_on_inputs(model, index)
    allowed = set(supported)
    carried = {target}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type in NON_DIFFERENTIABLE or not any(o in needed for o in node.output):
            continue
        positions = _differentiable_positions(node)
        if not any(node.input[p] in carried for p in positions if p < len(node.input)):
            if any(i in carried for i in node.input):
                raise HeadError(
                    f"node {node.name!r} ({node.op_type}) reads the map as a parameter; only its data input "
                    "can carry the gradient here"
                )
            continue
        if allowed and node.op_type not in allowed:
            raise HeadError(f"node {node.name!r} ({node.op_type}) after {target!r} is not supported in the head")
        for p in positions:
            name = node.input[p] if p < len(node.input) else ""
            if name and name not in carried and name in body_values:
                raise HeadError(
                    f"node {node.name!r} ({node.op_type}) also reads {name!r}, which does not come from "
                    f"{target!r} (a skip connection around it): pick a layer after it"
                )
        carried.update(o for o in node.output[:1] if o)
        nodes.append(node)
    if logits not in carried:
        raise HeadError(f"no differentiable path from {target!r} to the logits {logits!r}")
    return Head(target, layout, logits, tuple(nodes), shapes, logit_dims[0])


def _aliased_layout(layout: str, perm: list[int] | None) -> str | None:
    """The layout of a Transpose's input, given its output's layout."""
    if perm is None or perm == [0, 1, 2, 3]:
        return layout
    if layout == NHWC and perm == [0, 2, 3, 1]:
        return NCHW
    if layout == NCHW and perm == [0, 3, 1, 2]:
        return NHWC
    return None


def _depends_on_inputs(model: onnx.ModelProto, index: GraphIndex) -> set[str]:
    """Tensors whose values (not just shapes) come from a graph input."""
    values = {value.name for value in model.graph.input} - set(index.constants)
    for node in model.graph.node:
        if node.op_type not in ("Shape", "Size") and any(i in values for i in node.input):
            values.update(node.output)
    return values
