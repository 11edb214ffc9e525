"""Reductions over axes other than the batch: ReduceMean."""

from __future__ import annotations

import numpy as np
import onnx

from realtime.export.graph.index import attrs
from realtime.export.ops.context import Context, Grad, Grads, RuleError, first
from realtime.export.ops.record import OpRecord


def reduce_axes(ctx: Context, node: onnx.NodeProto) -> list[int]:
    """A Reduce node's axes, normalised to the input's rank (axes moved from attribute to input at opset 18)."""
    rank = len(ctx.dims(node.input[0])) + 1
    listed = attrs(node).get("axes")
    if listed is None and len(node.input) > 1 and node.input[1]:
        listed = ctx.value(node.input[1])
        if listed is None:
            raise RuleError(f"node {node.name!r}: reduction axes must be constant")
    axes = sorted(int(a) % rank for a in (listed if listed is not None else range(rank)))
    if 0 in axes:
        raise RuleError(f"node {node.name!r} reduces over the batch axis")
    return axes


def _reduce_mean(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    b, dims = ctx.b, ctx.dims(node.input[0])
    axes = reduce_axes(ctx, node)
    grad = ctx.normal(g)
    if not attrs(node).get("keepdims", 1):
        grad = b.unsqueeze(grad, [a + 1 for a in axes])
    count = int(np.prod([dims[a - 1] for a in axes]))
    spread = b.op("Expand", [b.scale(grad, 1.0 / count), b.ints([1, 1, *dims])])
    return first(node, Grad(spread))


def _reduce_sum(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """The gradient copied to every summed position (axes as an input since opset 13)."""
    b, dims = ctx.b, ctx.dims(node.input[0])
    axes = reduce_axes(ctx, node)
    grad = ctx.normal(g)
    if not attrs(node).get("keepdims", 1):
        grad = b.unsqueeze(grad, [a + 1 for a in axes])
    return first(node, Grad(b.op("Expand", [grad, b.ints([1, 1, *dims])])))


RECORDS = (
    OpRecord("ReduceMean", _reduce_mean, pooled="reduce", tensorrt=True, tensorrt_note="constant axes"),
    OpRecord("ReduceSum", _reduce_sum, tensorrt=True, tensorrt_note="constant axes"),
)
