"""Derivatives of dense layers (Gemm, MatMul), and the pooled kernel that skips reading the big one.

Across Dense layers gradients travel features-first, [F, N, K], so each weight is read as Gemm's
first operand: the form onnxruntime runs fastest, and the one OpenVINO computes right when the
forward shares that weight.
"""

from __future__ import annotations

import numpy as np
import onnx

from realtime.export.graph.index import attrs
from realtime.export.ops.context import Context, Grad, Grads, RuleError, first, grads_at
from realtime.export.ops.elementwise import unbroadcast
from realtime.export.ops.record import OpRecord


def _dense(ctx: Context, node: onnx.NodeProto, g: Grad, weight_t: np.ndarray | str, trans: bool, alpha: float) -> Grad:
    """x's gradient through y = alpha * x @ op(W): op(W) @ g^T with the weight as Gemm's first operand."""
    b = ctx.b
    weight = weight_t if isinstance(weight_t, str) else b.const(weight_t, "pooled_kernel")
    if g.onehot:  # one-hot @ op(W)^T is op(W)'s columns for the classes
        picked = b.op("Gather", [weight, ctx.classes], axis=0 if trans else 1)
        return Grad(b.scale(picked, alpha), features_first=not trans)
    flat = b.reshape(ctx.features_first(g), [ctx.dims(node.output[0])[0], -1])
    product = b.op("Gemm", [weight, flat], transA=int(trans), alpha=float(alpha))
    in_features = b.const(np.asarray([_rows(ctx, weight_t, trans)], np.int64), "features")
    return Grad(b.reshape(product, b.concat([in_features, ctx.nk])), features_first=True)


def _rows(ctx: Context, weight: np.ndarray | str, trans: bool) -> int:
    shape = ctx.value(weight).shape if isinstance(weight, str) else weight.shape  # type: ignore[union-attr]
    return int(shape[1] if trans else shape[0])


def dense_weight(ctx: Context, node: onnx.NodeProto, carried: tuple[int, ...]) -> tuple[str, bool, float]:
    """(weight, transposed, alpha) of a Gemm or MatMul whose data input carries the gradient."""
    a = attrs(node)
    if carried != (0,) or a.get("transA", 0) or ctx.value(node.input[1]) is None:
        raise RuleError(
            f"node {node.name!r} ({node.op_type}): only x @ W with a constant 2-D weight is supported in the head"
        )
    if len(ctx.dims(node.input[0])) != 1:
        raise RuleError(f"node {node.name!r} ({node.op_type}) multiplies a {len(ctx.dims(node.input[0])) + 1}-D tensor")
    return node.input[1], bool(a.get("transB", 0)), float(a.get("alpha", 1.0))


def _gemm(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    weight, trans, alpha = dense_weight(ctx, node, carried)
    return first(node, _dense(ctx, node, g, weight, trans, alpha))


def _matmul(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """x @ W of a [N, F] map goes the Dense way (features-first); anything else (tokens [N, T, C] @ W,
    attention's Q @ K^T and A @ V of two activations) as dA = g @ B^T, dB = A^T @ g, broadcasting
    over the batch, the targets and any leading axes, and undone by summing."""
    weight = ctx.value(node.input[1])
    if carried == (0,) and weight is not None and weight.ndim == 2 and len(ctx.dims(node.input[0])) == 1:
        return _gemm(ctx, node, g, carried)
    b, grad = ctx.b, ctx.normal(ctx.materialize(g))
    out: dict[int, Grad] = {}
    for p in carried:
        other = node.input[1 - p]
        value = ctx.value(other)
        if value is not None:
            if value.ndim < 2:
                raise RuleError(f"node {node.name!r} (MatMul) with a vector operand is not supported")
            swapped = b.const(np.ascontiguousarray(np.swapaxes(value, -1, -2)), "matmul_transposed")
        else:
            rank = len(ctx.dims(other)) + 2  # lifted: [N, 1, *dims]
            if rank < 4:
                raise RuleError(f"node {node.name!r} (MatMul) with a vector operand is not supported")
            source = ctx.untransposed(other)
            swapped = (ctx.lift(source, False) if source is not None
                       else b.transpose(ctx.lift(other, False), [*range(rank - 2), rank - 1, rank - 2]))  # fmt: skip
        product = b.op("MatMul", [grad, swapped] if p == 0 else [swapped, grad])
        out[p] = unbroadcast(ctx, Grad(product), node.input[p], node.output[0])
    return grads_at(node, out)


def pooled_kernel(
    weight: np.ndarray, trans: bool, flat_dims: tuple[int, ...], channel_axis: int
) -> tuple[np.ndarray, bool]:
    """A post-flatten Dense weight summed over space: the spatial sum of dlogit/dA without the big read.

    Exact when every op between the map and the flatten moves gradient values
    without splitting or scaling them unevenly (one-hot max-pool routing,
    average pooling, layout changes). Returns the kernel and its `trans` flag.
    """
    axes = tuple(i for i in range(len(flat_dims)) if i != channel_axis - 1)
    if trans:  # [out, in]
        summed = weight.reshape(weight.shape[0], *flat_dims).sum(axis=tuple(a + 1 for a in axes), dtype=np.float64)
    else:  # [in, out]
        summed = weight.reshape(*flat_dims, weight.shape[1]).sum(axis=axes, dtype=np.float64)
    return summed.astype(np.float32), trans


def pooled_dense(
    ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...], flat_dims: tuple[int, ...], channel_axis: int
) -> str:
    """[N, K, C]: the spatial sum of the map's gradient, through the pooled kernel of `node`."""
    weight, trans, alpha = dense_weight(ctx, node, carried)
    kernel, _ = pooled_kernel(ctx.value(weight), trans, flat_dims, channel_axis)  # type: ignore[arg-type]
    return ctx.normal(_dense(ctx, node, g, kernel, trans, alpha))


RECORDS = (
    OpRecord("Gemm", _gemm, layout="breaks", pooled="dense", tensorrt=8.5, int8="dense", attention="projects"),
    OpRecord(
        "MatMul",
        _matmul,
        grad_inputs="all",
        layout="breaks",
        pooled="dense",
        tensorrt=8.5,
        int8="dense",
        tokens="mixes_two_activations",
        per_token="right_product",
        attention="combines",
        batch_fold="product",
    ),
)
