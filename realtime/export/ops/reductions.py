"""Reductions over axes other than the batch: ReduceMean, ReduceSum, and the L1 and L2 norms (F.normalize)."""

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


def _spread(ctx: Context, node: onnx.NodeProto, g: Grad, mean: bool) -> Grads:
    """The gradient copied to every reduced position (divided by their count for a mean)."""
    b, dims = ctx.b, ctx.dims(node.input[0])
    axes = reduce_axes(ctx, node)
    grad = ctx.normal(g)
    if not attrs(node).get("keepdims", 1):
        grad = b.unsqueeze(grad, [a + 1 for a in axes])
    if mean:
        grad = b.scale(grad, 1.0 / int(np.prod([dims[a - 1] for a in axes])))
    return first(node, Grad(b.op("Expand", [grad, b.ints([1, 1, *dims])])))


def _reduce_mean(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    return _spread(ctx, node, g, mean=True)


def _reduce_sum(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """Axes as an input since opset 13."""
    return _spread(ctx, node, g, mean=False)


def _reduce_l2(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """d ||x||_2 / dx = x / ||x||_2 (0 where the norm is 0, as torch's F.normalize clamps it)."""
    b = ctx.b
    axes = reduce_axes(ctx, node)
    grad, norm = ctx.normal(g), node.output[0]
    if not attrs(node).get("keepdims", 1):
        grad, norm = b.unsqueeze(grad, [a + 1 for a in axes]), b.unsqueeze(norm, axes)
    safe = b.op("Max", [norm, b.const(np.float32(np.finfo(np.float32).tiny))])
    slope = b.op("Div", [node.input[0], safe])  # [N, *dims]
    return first(node, Grad(b.mul(grad, ctx.lift(slope, False))))


def _reduce_l1(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """d ||x||_1 / dx = sign(x)."""
    b = ctx.b
    axes = reduce_axes(ctx, node)
    grad = ctx.normal(g)
    if not attrs(node).get("keepdims", 1):
        grad = b.unsqueeze(grad, [a + 1 for a in axes])
    return first(node, Grad(b.mul(grad, ctx.lift(b.op("Sign", [node.input[0]]), False))))


RECORDS = (
    OpRecord("ReduceMean", _reduce_mean, pooled="reduce", tensorrt=8.5, tensorrt_note="constant axes", tokens="reduces",
             batch_fold="axes", axes_input=1),
    OpRecord("ReduceSum", _reduce_sum, tensorrt=8.5, tensorrt_note="constant axes", tokens="reduces",
             batch_fold="axes", axes_input=1),
    OpRecord("ReduceL2", _reduce_l2, tensorrt=8.5, tensorrt_note="constant axes", tokens="reduces",
             batch_fold="axes", axes_input=1),
    OpRecord("ReduceL1", _reduce_l1, tensorrt=8.5, tensorrt_note="constant axes", tokens="reduces",
             batch_fold="axes", axes_input=1),
)
