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

from realtime.export.graph.index import GraphIndex, attrs, perm
from realtime.export.graph.layout import NCHW, NHWC
from realtime.export.graph.shapes import static_shapes
from realtime.export.importers import ForwardGraph
from realtime.export.ops import record
from realtime.export.targets.tokens import (
    MAX_PREFIX,
    NO_HINT,
    TokenGrid,
    TokenHint,
    infer_grid,
    token_dims,
    tokens_mixed_later,
)


class HeadError(ValueError):
    """The graph after the target tensor cannot be differentiated here; the message says why and what would work."""


@dataclass(frozen=True)
class Target:
    """A tensor to explain: its name in the graph, the name the user knows it by, its layout if known,
    and for a token layer [N, T, C] the grid its tokens lie on."""

    tensor: str
    name: str
    layout: str | None
    grid: TokenGrid | None = None


@dataclass(frozen=True)
class Targets:
    """Every layer of one export, the first giving version 1's outputs, and the input when asked for."""

    layers: tuple[Target, ...]
    input: Target | None


def choose(
    forward: ForwardGraph,
    layer: str | None,
    more_layers: Sequence[str],
    input_gradients: bool,
    hint: TokenHint = NO_HINT,
) -> Targets:
    """The layers to explain: the importer's own (a Keras layer name it resolved), else `layer` and
    `more_layers`, else the default feature map; and the model input for input gradients."""
    if forward.layers:  # the importer already named its layers' tensors (Keras)
        layers = tuple(Target(name, name, forward.layer_layout) for name in forward.layers)
    else:
        shapes = static_shapes(forward.model)
        first = layer or default_target(forward, GraphIndex.of(forward.model.graph), shapes, hint)
        layers = tuple(_target(forward, name, shapes, hint) for name in (first, *more_layers))
    given = Target(forward.input_name, forward.input_name, forward.layout) if input_gradients else None
    return Targets(layers, given)


def _target(forward: ForwardGraph, name: str, shapes: Mapping[str, tuple[int, ...]], hint: TokenHint) -> Target:
    """A named tensor; a token layer with the grid its tokens lie on, or advice on --grid."""
    dims = token_dims(shapes, name)
    if dims is None:
        return Target(name, name, None)
    grid = infer_grid(dims[0], image_size(forward), hint)
    if grid is None:
        raise HeadError(
            f"tensor {name!r} holds {dims[0]} tokens that do not lie on one grid of the input's aspect after "
            f"0-{MAX_PREFIX} prefix tokens; pass --grid HxW (and --prefix-tokens K)"
        )
    return Target(name, name, NHWC, grid)


def image_size(forward: ForwardGraph) -> tuple[int, int]:
    """(H, W) of the model's input."""
    value = next(v for v in forward.model.graph.input if v.name == forward.input_name)
    dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
    return (dims[2], dims[3]) if forward.layout == NCHW else (dims[1], dims[2])


def layout_of(model: onnx.ModelProto, index: GraphIndex, name: str, input_layout: str) -> str | None:
    """NCHW or NHWC for a 4-D tensor, from the ops that made it, the nearest that says first; None when
    nothing on the way back says (attention's [N, heads, T, d] comes from Reshapes, which do not)."""
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
        if says == "permutes":  # a layout change only of a tensor with a layout (not attention's heads)
            order = perm(node)
            before = (
                layout_of(model, index, node.input[0], input_layout) if order in ([0, 2, 3, 1], [0, 3, 1, 2]) else None
            )
            if order == [0, 2, 3, 1] and before == NCHW:
                return NHWC
            if order == [0, 3, 1, 2] and before == NHWC:
                return NCHW
            continue  # this branch says nothing; another input may (a residual's)
        if says == "nchw":
            return NCHW
        if says == "last_axis" and int(attrs(node).get("axis", -1)) in (-1, 3):  # channels are what it normalises
            return NHWC
        if says == "breaks":
            continue
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


def candidates(
    forward: ForwardGraph, index: GraphIndex, shapes: Mapping[str, tuple[int, ...]], hint: TokenHint = NO_HINT
) -> list[str]:
    """What the logits depend on that can be explained, in topological order: 4-D maps with spatial extent
    > 1 whose layout the ops that made them tell (not attention's [N, heads, T, d]), and token layers
    (a LayerNormalization's or a residual Add's [N, T, C]) whose tokens lie on a grid; none whose first axis
    is not the batch (a fold the import could not carry batch-first)."""
    model = forward.model
    logits = resolve_logits(model, index)
    needed = index.ancestors(logits)
    image = image_size(forward)
    found = []
    for node in model.graph.node:
        for name in node.output:
            dims = shapes.get(name)
            if name not in needed or name in index.constants or not dims or name in forward.folded:
                continue
            if len(dims) == 3:
                known = _spatial(dims) > 1 and layout_of(model, index, name, forward.layout) is not None
            else:
                known = len(dims) == 2 and _token_layer(node, index) and infer_grid(dims[0], image, hint) is not None
            if known:
                found.append(name)
    return found


def _token_layer(node: onnx.NodeProto, index: GraphIndex) -> bool:
    """A block's boundary: a LayerNormalization, or a residual Add of two computed tensors."""
    if node.op_type == "LayerNormalization":
        return True
    return node.op_type == "Add" and all(i not in index.constants for i in node.input)


def _spatial(dims: tuple[int, ...]) -> int:
    """Spatial size of [C,H,W] or [H,W,C] dims: the smaller of the two readings is safe for '> 1'."""
    return min(dims[1] * dims[2], dims[0] * dims[1])


def _a_grid(
    model: onnx.ModelProto, index: GraphIndex, name: str, dims: tuple[int, ...], given: str
) -> bool:
    """Whether a map is a picture (more than one row and one column), not a strip: MaxViT's last grid window
    read as 1x49 explains nothing, so it is never the default (--layer can still pick it)."""
    if len(dims) != 3:
        return True  # a token layer: its grid was checked to be square-ish (infer_grid)
    height, width = (dims[1], dims[2]) if layout_of(model, index, name, given) == NCHW else (dims[0], dims[1])
    return height > 1 and width > 1


def default_target(
    forward: ForwardGraph, index: GraphIndex, shapes: Mapping[str, tuple[int, ...]], hint: TokenHint = NO_HINT
) -> str:
    """The last candidate not made by pooling or plumbing: VGG's last conv ReLU, ResNet's layer4 output,
    Swin's final norm; for a token layer, the last whose patch tokens still reach the logits (ViT's
    last block's first LayerNorm: after the last attention only the class token does)."""
    model = forward.model
    mixed = tokens_mixed_later(model, index)
    found = [
        name for name in candidates(forward, index, shapes, hint)
        if not record(index.producer[name].op_type).plumbing and (len(shapes[name]) == 3 or name in mixed)
        and _a_grid(model, index, name, shapes[name], forward.layout)
    ]  # fmt: skip
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
    grid: TokenGrid | None = None  # a token layer's grid


def list_layers(forward: ForwardGraph, hint: TokenHint = NO_HINT) -> list[Layer]:
    """Candidate target tensors, in graph order, the default marked."""
    shapes = static_shapes(forward.model)
    index = GraphIndex.of(forward.model.graph)
    chosen = forward.layers[0] if forward.layers else default_target(forward, index, shapes, hint)
    image = image_size(forward)
    return [
        Layer(name, index.producer[name].op_type, shapes[name], name == chosen,
              infer_grid(shapes[name][0], image, hint) if len(shapes[name]) == 2 else None)
        for name in candidates(forward, index, shapes, hint)
    ]  # fmt: skip
