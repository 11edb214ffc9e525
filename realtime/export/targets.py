"""Which tensor to explain: the candidates, the default, the logits, and a tensor's layout.

The one answer to "which layer": `choose(forward, layer, more_layers)` turns what the importer and
the user said into the tensors the backward starts from, with their layouts; --list-layers
reads the same candidates.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import onnx

from realtime.export.graph.index import GraphIndex, perm
from realtime.export.graph.layout import NCHW, NHWC
from realtime.export.graph.shapes import static_shapes
from realtime.export.importers import ForwardGraph
from realtime.export.ops import record


class HeadError(ValueError):
    """The graph after the target tensor cannot be differentiated here; the message says why and what would work."""


@dataclass(frozen=True)
class Target:
    """A tensor to explain: its name in the graph, the name the user knows it by, its layout if known."""

    tensor: str
    name: str
    layout: str | None


@dataclass(frozen=True)
class Targets:
    """Every layer of one export, the first giving version 1's outputs, and the input when asked for."""

    layers: tuple[Target, ...]
    input: Target | None


def choose(forward: ForwardGraph, layer: str | None, more_layers: Sequence[str], input_gradients: bool) -> Targets:
    """The layers to explain: the importer's own (a Keras layer name it resolved), else `layer` and
    `more_layers`, else the default feature map; and the model input for input gradients."""
    if forward.layers:  # the importer already named its layers' tensors (Keras)
        layers = tuple(Target(name, name, forward.layer_layout) for name in forward.layers)
    else:
        shapes = static_shapes(forward.model)
        first = layer or default_target(forward.model, GraphIndex.of(forward.model.graph), shapes)
        layers = tuple(Target(name, name, None) for name in (first, *more_layers))
    given = Target(forward.input_name, forward.input_name, forward.layout) if input_gradients else None
    return Targets(layers, given)


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
        says = record(node.op_type).layout
        if says == "permutes":
            order = perm(node)
            if order == [0, 2, 3, 1]:
                return NHWC
            if order == [0, 3, 1, 2]:
                return NCHW
            return None
        if says == "nchw":
            return NCHW
        if says == "breaks":
            return None
        queue.extend(i for i in node.input if i and i not in index.constants)
    return None


def resolve_logits(model: onnx.ModelProto, index: GraphIndex) -> str:
    """The graph's first output, or the input of a trailing Softmax (Grad-CAM explains logits)."""
    name = model.graph.output[0].name
    node = index.producer.get(name)
    while node is not None and record(node.op_type).logits_view:
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
    found = [n for n in candidates(model, index, shapes) if not record(index.producer[n].op_type).plumbing]
    if not found:
        raise HeadError("the graph has no 4-D feature map with spatial extent > 1 before its logits; pass --layer")
    return found[-1]


def alias(index: GraphIndex, target: str, needed: set[str]) -> tuple[str, list[int] | None]:
    """A target off the logits' path (a layout Transpose or Identity of one on it) moves to its source."""
    order: list[int] | None = None
    while target not in needed:
        node = index.producer.get(target)
        role = record(node.op_type).pooled if node is not None else ""
        if node is None or role not in ("moves", "permutes"):  # a copy of its input, or a layout change
            raise HeadError(f"the logits do not depend on {target!r}; pick a tensor from --list-layers")
        if role == "permutes":
            order = perm(node)
        target = node.input[0]
    return target, order


@dataclass(frozen=True)
class Layer:
    """A tensor that can be explained, for --list-layers."""

    name: str
    op_type: str
    dims: tuple[int, ...]
    default: bool


def list_layers(forward: ForwardGraph) -> list[Layer]:
    """Candidate target tensors, in graph order, the default marked."""
    shapes = static_shapes(forward.model)
    index = GraphIndex.of(forward.model.graph)
    chosen = forward.layers[0] if forward.layers else default_target(forward.model, index, shapes)
    return [
        Layer(name, index.producer[name].op_type, shapes[name], name == chosen)
        for name in candidates(forward.model, index, shapes)
    ]
