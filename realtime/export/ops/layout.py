"""Ops that only move values: Flatten, Reshape, Squeeze, Unsqueeze, Transpose."""

from __future__ import annotations

import onnx

from realtime.export.graph.index import attrs, perm
from realtime.export.ops.context import Context, Grad, Grads, RuleError, first
from realtime.export.ops.record import OpRecord


def _normal_back(ctx: Context, node: onnx.NodeProto, g: Grad) -> Grads:
    """Any op that only rearranges a batch-major tensor: reshape the gradient back to its input's dims."""
    return first(node, Grad(ctx.back_to(ctx.normal(g), ctx.dims(node.input[0]))))


def _reshape(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    if node.op_type == "Flatten" and attrs(node).get("axis", 1) != 1:
        raise RuleError(f"node {node.name!r}: Flatten must keep the batch axis (axis=1)")
    if g.features_first and len(ctx.dims(node.input[0])) == 1:
        return first(node, g)  # [N, F] -> [N, F]: nothing moves
    return _normal_back(ctx, node, g)


def _transpose(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    order = perm(node)
    if not order or order[0] != 0:
        raise RuleError(
            f"node {node.name!r} (Transpose) moves the batch axis, which the backward keeps first (the import "
            "rebuilds torch's nn.MultiheadAttention batch-first only when it is plain self-attention: no mask, "
            "one packed projection); pick a layer after it"
        )
    inverse = [order.index(i) for i in range(len(order))]
    back = [0, 1, *(p + 1 for p in inverse[1:])]
    return first(node, Grad(ctx.b.transpose(ctx.normal(g), back)))


RECORDS = (
    OpRecord("Flatten", _reshape, layout="breaks", plumbing=True, pooled="flattens", tensorrt=8.5,
             batch_fold="reshape"),
    OpRecord("Reshape", _reshape, layout="breaks", plumbing=True, pooled="flattens", tensorrt=8.5,
             folds_on_constants=True, per_token="reshapes", attention="moves", batch_fold="reshape"),
    OpRecord("Squeeze", _reshape, layout="breaks", plumbing=True, tensorrt=8.5, tensorrt_note="constant axes",
             tensorrt_constants=(1,), folds_on_constants=True, attention="moves", batch_fold="axes",
             axes_input=1),
    OpRecord("Unsqueeze", _reshape, layout="breaks", plumbing=True, tensorrt=8.5, tensorrt_note="constant axes",
             tensorrt_constants=(1,), folds_on_constants=True, attention="moves", batch_fold="axes",
             axes_input=1),
    OpRecord("Transpose", _transpose, layout="permutes", plumbing=True, pooled="permutes", tensorrt=8.5,
             per_token="permutes", attention="moves", batch_fold="transpose"),
)  # fmt: skip
