"""Softmax and LogSoftmax over any axis (attention weights, a classifier's last step)."""

from __future__ import annotations

import onnx

from realtime.export.graph.index import attrs
from realtime.export.ops.context import Context, Grad, Grads, first
from realtime.export.ops.record import OpRecord


def _axis(ctx: Context, node: onnx.NodeProto) -> int:
    """The softmax axis in the gradient's [N, K, *dims] (opset 13 on: one axis, -1 by default)."""
    rank = len(ctx.dims(node.input[0])) + 1
    return int(attrs(node).get("axis", -1)) % rank + 1


def _softmax(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """dx = y * (g - sum(g * y)) along the axis."""
    b, axis = ctx.b, _axis(ctx, node)
    y = ctx.lift(node.output[0], False)
    grad = ctx.normal(g)
    total = b.reduce("ReduceSum", b.mul(grad, y), [axis])
    return first(node, Grad(b.mul(y, b.op("Sub", [grad, total]))))


def _log_softmax(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """dx = g - softmax(x) * sum(g) along the axis; softmax(x) = exp(y)."""
    b, axis = ctx.b, _axis(ctx, node)
    probabilities = ctx.lift(b.op("Exp", [node.output[0]]), False)
    grad = ctx.normal(g)
    return first(node, Grad(b.op("Sub", [grad, b.mul(probabilities, b.reduce("ReduceSum", grad, [axis]))])))


RECORDS = (
    OpRecord(
        "Softmax",
        _softmax,
        logits_view=True,
        tensorrt=8.5,
        tokens="mixes",
        per_token="normalises_one_axis",
        attention="normalises",
        batch_fold="axes",
        default_axis=-1,
    ),
    OpRecord("LogSoftmax", _log_softmax, logits_view=True, tensorrt=8.5, batch_fold="axes",
              default_axis=-1),
)
