"""Each explained box's gradient at its level, from a window of the head input around its cell.

One logit of a level reads only `radius` cells around its own (head.Level), so its gradient with
respect to the head input is zero outside a (2 radius + 1)^2 window. Here the class branch is copied to
run on that window alone (its convolutions unpadded; what lies off the map zeroed before each one, as
the padding did), for every explained box at once as a batch of windows, and the project's own reverse
walk (autodiff.backward, one rule per op) differentiates the copy. Nothing is computed for the anchors
no target asks for, and the cost is that of a few tiny convolutions, not one full-size backward a box.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from realtime.export.autodiff.backward import build_backward
from realtime.export.autodiff.head import Head
from realtime.export.detect.head import DetectorError, Level
from realtime.export.graph.builder import GraphBuilder
from realtime.export.graph.index import attrs
from realtime.export.graph.layout import NCHW


@dataclass(frozen=True)
class Cells:
    """Where the explained boxes sit on one level, one row per (image, target column) pair, M = N*K."""

    images: str  # [M] int64
    rows: str  # [M] int64, clamped onto the level
    columns: str  # [M] int64
    on: str  # [M,1,1,1] float: 1 where the box is explained and its anchor is on this level


@dataclass(frozen=True)
class Window:
    patch: str  # [M,c,s,s] the head input around each box's cell (zeros off the map)
    gradients: str  # [M,c,s,s] d logit / d patch, zero off the map and for boxes on other levels
    logits: str  # [M,classes] the branch's logits recomputed on the window (the self-check compares them)


def window(b: GraphBuilder, level: Level, cells: Cells, classes: str, num_classes: int,
           shapes: Mapping[str, tuple[int, ...]]) -> Window:  # fmt: skip
    """The windowed class branch of `level` and its backward, for the box classes `classes` [M,1]."""
    s = level.window
    patch = _patch(b, level, cells)
    masks: dict[int, str] = {}

    def mask(size: int) -> str:
        if size not in masks:
            masks[size] = _on_map(b, level, cells, size)
        return masks[size]

    renamed, sizes = {level.input: patch}, {patch: s}
    window_shapes: dict[str, tuple[int, ...]] = {patch: (level.channels, s, s)}
    nodes: list[onnx.NodeProto] = []
    for node in level.branch:
        inputs = [renamed.get(name, name) for name in node.input]
        computed = [name for name in inputs if name in sizes]
        if len({sizes[name] for name in computed}) != 1:
            raise DetectorError(f"{node.op_type} {node.name!r} mixes maps of two window sizes in the class branch")
        size = sizes[computed[0]]
        options = attrs(node)
        if node.op_type == "Conv":
            masked = b.op("Mul", [inputs[0], mask(size)], hint="on_map")
            nodes.append(b.graph.node[-1])
            window_shapes[masked] = window_shapes[inputs[0]]
            sizes[masked], inputs[0] = size, masked
            options["pads"] = [0, 0, 0, 0]
            size -= int(options["kernel_shape"][0]) - 1
        out = b.op(node.op_type, inputs, hint="window", **options)
        nodes.append(b.graph.node[-1])
        renamed[node.output[0]], sizes[out] = out, size
        channels = shapes[node.output[0]][0]
        window_shapes[out] = (channels, size, size)
    last = renamed[level.logits]
    if sizes[last] != 1:
        raise DetectorError(f"the class branch of {level.logits!r} does not end on one cell of its window")
    flat = b.reshape(last, [0, -1])
    nodes.append(b.graph.node[-1])
    window_shapes[flat] = (window_shapes[last][0],)
    logits = flat
    if level.channel or window_shapes[flat][0] != num_classes:
        logits = b.slice(flat, [level.channel], [level.channel + num_classes], [1])
        nodes.append(b.graph.node[-1])
        window_shapes[logits] = (num_classes,)
    for size, name in masks.items():
        window_shapes[name] = (1, size, size)
    head = Head(patch, NCHW, logits, tuple(nodes), window_shapes, num_classes)
    backward = build_backward(b, head, classes, pooled=False)
    assert backward.gradients is not None
    gradients = b.reshape(backward.gradients, [-1, level.channels, s, s])  # [M,1,c,s,s] -> [M,c,s,s]
    gradients = b.op("Mul", [b.op("Mul", [gradients, mask(s)]), cells.on])
    return Window(patch, gradients, logits)


def _positions(b: GraphBuilder, level: Level, cells: Cells) -> str:
    """[M, s*s]: the flat positions of each box's window on the level padded by the radius (row-major)."""
    s, padded_w = level.window, level.width + 2 * level.radius
    corner = b.op("Add", [b.op("Mul", [cells.rows, b.const(np.int64(padded_w))]), cells.columns])  # [M]
    steps = (np.arange(s)[:, None] * padded_w + np.arange(s)[None, :]).reshape(1, -1).astype(np.int64)
    return b.op("Add", [b.unsqueeze(corner, [1]), b.const(steps, "window_steps")])


def _patch(b: GraphBuilder, level: Level, cells: Cells) -> str:
    """[M,c,s,s]: the head input around each box's cell, padded with zeros where the window leaves the map."""
    r, s = level.radius, level.window
    padded = b.op("Pad", [level.input, b.ints([0, 0, r, r, 0, 0, r, r])], mode="constant")
    rows = b.reshape(b.transpose(padded, [0, 2, 3, 1]), [-1, level.channels])  # [N*Hp*Wp, c]
    image_start = b.op("Mul", [cells.images, b.const(np.int64((level.height + 2 * r) * (level.width + 2 * r)))])
    where = b.op("Add", [_positions(b, level, cells), b.unsqueeze(image_start, [1])])  # [M, s*s]
    picked = b.op("Gather", [rows, b.reshape(where, [-1])], axis=0)  # [M*s*s, c]
    return b.transpose(b.reshape(picked, [-1, s, s, level.channels]), [0, 3, 1, 2])


def _on_map(b: GraphBuilder, level: Level, cells: Cells, size: int) -> str:
    """[M,1,size,size] float: 1 where a window of `size` centred on each box's cell lies on the map."""
    steps = b.const((np.arange(size) - (size - 1) // 2).reshape(1, -1).astype(np.int64), "window_offsets")

    def inside(position: str, extent: int) -> str:
        at = b.op("Add", [b.unsqueeze(position, [1]), steps])  # [M,size]
        low = b.op("GreaterOrEqual", [at, b.const(np.int64(0))])
        return b.cast(b.op("And", [low, b.op("Less", [at, b.const(np.int64(extent))])]))

    rows, columns = inside(cells.rows, level.height), inside(cells.columns, level.width)
    return b.unsqueeze(b.op("Mul", [b.unsqueeze(rows, [2]), b.unsqueeze(columns, [1])]), [1])


def embed(b: GraphBuilder, level: Level, cells: Cells, values: str) -> str:
    """[M,s,s] window values -> [M,h,w] on the level's grid (zeros elsewhere)."""
    r, s = level.radius, level.window
    padded_h, padded_w = level.height + 2 * r, level.width + 2 * r
    where = _positions(b, level, cells)  # [M, s*s]
    m = b.slice(b.op("Shape", [values]), [0], [1], [0])
    box = b.op("Expand", [b.op("Range", [b.scalar(0), b.squeeze(m, [0]), b.scalar(1)]),
                          b.concat([b.ints([s * s]), m])])  # fmt: skip  # [s*s, M]
    indices = b.concat([b.unsqueeze(b.transpose(box, [1, 0]), [2]), b.unsqueeze(where, [2])], 2)  # [M,s*s,2]
    zeros = b.op("ConstantOfShape", [b.concat([m, b.ints([padded_h * padded_w])])],
                 value=onnx.helper.make_tensor("zero", onnx.TensorProto.FLOAT, [1], [0.0]))  # fmt: skip
    scattered = b.op("ScatterND", [zeros, indices, b.reshape(values, [-1, s * s])])
    grid = b.reshape(scattered, [-1, padded_h, padded_w])
    return b.slice(grid, [r, r], [r + level.height, r + level.width], [1, 2])
