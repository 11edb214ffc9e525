"""Token layers as feature maps: a transformer's [N, T, C] read as [N, h, w, C] on its patch grid.

T is the grid's h*w patch tokens after 0-2 prefix tokens (class, distillation). pytorch-grad-cam's
ViT tutorial does the same with a reshape transform; here the view is part of the graph: the
tokens are split into prefix and grid, the grid reshaped to [N, h, w, C] (the map explained, a
channels-last feature map like any other) and joined back for the rest of the model, so the
backward reaches it by the ordinary rules (Reshape, Concat) and everything downstream of the
target (methods, fusion across layers, the pooled shortcut's refusal) is what it is for a CNN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import GraphIndex, attrs
from realtime.export.graph.passes import topological_sort
from realtime.export.ops import record

MAX_PREFIX = 16  # ViT's class token; DeiT's class and distillation tokens; a ViT's 4 to 16 register tokens


@dataclass(frozen=True)
class TokenHint:
    """What the user said about token layers: --grid HxW and --prefix-tokens K (None: infer)."""

    grid: tuple[int, int] | None = None
    prefix: int | None = None


NO_HINT = TokenHint()


@dataclass(frozen=True)
class TokenGrid:
    """How a token tensor's T tokens lie: `prefix` tokens first, then a height x width grid, row by row."""

    height: int
    width: int
    prefix: int

    def describe(self) -> str:
        extra = f" + {self.prefix} prefix token{'s' if self.prefix != 1 else ''}" if self.prefix else ""
        return f"tokens on a {self.height}x{self.width} grid{extra}"


def infer_grid(tokens: int, image: tuple[int, int], hint: TokenHint = NO_HINT) -> TokenGrid | None:
    """The grid of `tokens` tokens for an image of `image` (H, W): the given one, else the split into up to
    MAX_PREFIX prefix tokens (class, distillation, registers) and a grid of the image's aspect whose cells
    tile the image in whole pixels; of several, the one with the fewest prefix tokens (a 4x4 grid and a class
    token, not a 3x3 grid and eight); None when none fits."""
    if hint.grid is not None:
        height, width = hint.grid
        prefix = tokens - height * width
        if prefix < 0 or (hint.prefix is not None and prefix != hint.prefix):
            return None
        return TokenGrid(height, width, prefix)
    found = []
    for prefix in (hint.prefix,) if hint.prefix is not None else range(MAX_PREFIX + 1):
        patches = tokens - prefix
        for height in range(2, patches):
            width = patches // height
            tiles = not image[0] % height and not image[1] % width and height * image[1] == width * image[0]
            if patches % height == 0 and tiles and 2 * prefix <= patches:  # a few prefix tokens, many patches
                found.append(TokenGrid(height, width, prefix))
    return min(found, key=lambda grid: grid.prefix) if found else None


def expose_grid(model: onnx.ModelProto, tokens: str, grid: TokenGrid, channels: int) -> str:
    """Insert grid = Reshape(tokens[:, prefix:], [N, h, w, C]) and make every reader of `tokens` read
    Concat(tokens[:, :prefix], Reshape(grid, [N, h*w, C])) instead; returns the grid's name.

    The values are unchanged (the forward pays a copy of the tokens); the grid is now a tensor on
    the logits' path, and its gradient is the gradient at the patch tokens."""
    graph = model.graph
    stem = f"{tokens}/token_grid"
    readers = [n for n in graph.node if tokens in n.input]
    outputs = {o.name for o in graph.output}
    if tokens in outputs:
        raise ValueError(f"{tokens!r} is a graph output; explain a layer before it")

    def const(name: str, values: list[int]) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), f"{stem}/const_{name}"))
        return f"{stem}/const_{name}"

    total = grid.prefix + grid.height * grid.width
    nodes = [
        onnx.helper.make_node("Slice", [tokens, const("start", [grid.prefix]), const("end", [total]),
                                        const("axis", [1])], [f"{stem}/patches"], name=f"{stem}/patches"),
        onnx.helper.make_node("Reshape", [f"{stem}/patches", const("shape", [0, grid.height, grid.width, channels])],
                              [stem], name=stem),
        onnx.helper.make_node("Reshape", [stem, const("flat", [0, grid.height * grid.width, channels])],
                              [f"{stem}/flat"], name=f"{stem}/flat"),
    ]  # fmt: skip
    joined = f"{stem}/flat"
    if grid.prefix:
        nodes += [
            onnx.helper.make_node("Slice", [tokens, const("zero", [0]), const("prefix", [grid.prefix]),
                                            f"{stem}/const_axis"], [f"{stem}/prefix"], name=f"{stem}/prefix"),
            onnx.helper.make_node("Concat", [f"{stem}/prefix", f"{stem}/flat"], [f"{stem}/joined"],
                                  name=f"{stem}/joined", axis=1),
        ]  # fmt: skip
        joined = f"{stem}/joined"
    for node in readers:
        node.input[:] = [joined if name == tokens else name for name in node.input]
    graph.node.extend(nodes)
    topological_sort(model)
    return stem


def token_dims(shapes: Mapping[str, tuple[int, ...]], name: str) -> tuple[int, int] | None:
    """(T, C) for a [N, T, C] tensor, else None."""
    dims = shapes.get(name)
    return (dims[0], dims[1]) if dims is not None and len(dims) == 2 else None


def tokens_mixed_later(model: onnx.ModelProto, index: GraphIndex) -> set[str]:
    """Tensors from which a path to the logits passes an op that mixes or pools tokens: attention's
    Softmax, a MatMul of two computed tensors, a mean or sum over the token axis (1)."""
    inits = {init.name: init for init in model.graph.initializer}
    marked: set[str] = set()
    for node in reversed(model.graph.node):
        computed = [i for i in node.input if i and i not in index.constants]
        role = record(node.op_type).tokens
        mixes = role == "mixes" or (role == "mixes_two_activations" and len(computed) == 2)
        if role == "reduces":
            axes = attrs(node).get("axes")
            if axes is None and len(node.input) > 1 and node.input[1] in inits:
                axes = numpy_helper.to_array(inits[node.input[1]])
            mixes = axes is not None and 1 in [int(a) for a in np.asarray(axes).reshape(-1)]
        if mixes or any(o in marked for o in node.output):
            marked.update(computed)
    return marked
