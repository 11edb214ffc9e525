"""Normalisations with constant statistics or over the feature axes: BatchNormalization, LayerNormalization,
InstanceNormalization and LpNormalization."""

from __future__ import annotations

import numpy as np
import onnx

from realtime.export.graph.index import attrs
from realtime.export.ops.context import Context, Grad, Grads, RuleError, first
from realtime.export.ops.record import OpRecord


def _batchnorm(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    a = attrs(node)
    scale, var = ctx.value(node.input[1]), ctx.value(node.input[4])
    if a.get("training_mode", 0) or scale is None or var is None:
        raise RuleError(f"node {node.name!r}: only inference BatchNormalization with constant statistics")
    factor = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(a.get("epsilon", 1e-5)))
    dims = ctx.dims(node.input[0])
    g = ctx.materialize(g)
    shaped = factor.reshape(-1, *([1] * (len(dims) - 1))) if not g.features_first else factor.reshape(-1, 1, 1)
    return first(node, Grad(ctx.b.mul(g.name, ctx.b.const(shaped, "bn_factor")), g.features_first))


def _layernorm(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """dx = (g' - mean(g') - x_hat * mean(g' * x_hat)) / sigma, with g' = g * scale, over the normalised axes."""
    rank = len(ctx.dims(node.input[0])) + 1
    start = int(attrs(node).get("axis", -1)) % rank
    if start == 0:
        raise RuleError(f"node {node.name!r} normalises over the batch axis")
    return _standardised_back(ctx, node, g, list(range(start, rank)), node.input[1])


def _instancenorm(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """Each (image, channel) standardised over its spatial axes: torch's GroupNorm writes it on [N, G, -1]
    (PoolFormer, ConvNeXt-style stems), InstanceNorm2d on [N, C, H, W]."""
    dims = ctx.dims(node.input[0])
    scale = ctx.b.reshape(node.input[1], [dims[0], *([1] * (len(dims) - 1))])  # [C, 1, ...]: per channel
    return _standardised_back(ctx, node, g, list(range(2, len(dims) + 1)), scale)


def _lp_normalization(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """y = x / ||x||_p along one axis: dx = (g - s * sum(g * y)) / ||x||_p, with s = y for p = 2 and sign(x)
    for p = 1 (both from d||x||_p / dx = s)."""
    b, x, y = ctx.b, node.input[0], node.output[0]
    rank = len(ctx.dims(x)) + 1
    axis, p = int(attrs(node).get("axis", -1)) % rank, int(attrs(node).get("p", 2))
    if axis == 0 or p not in (1, 2):
        raise RuleError(f"node {node.name!r}: LpNormalization with p 1 or 2 over an axis other than the batch")
    norm = b.reduce("ReduceL2" if p == 2 else "ReduceL1", x, [axis])
    direction = y if p == 2 else b.op("Sign", [x])
    grad = ctx.normal(g)
    along = b.reduce("ReduceSum", b.mul(grad, ctx.lift(y, False)), [axis + 1])
    spread = b.op("Sub", [grad, b.mul(ctx.lift(direction, False), along)])
    return first(node, Grad(b.op("Div", [spread, ctx.lift(norm, False)])))


def _standardised_back(ctx: Context, node: onnx.NodeProto, g: Grad, axes: list[int], scale: str) -> Grads:
    """dx for y = (x - mean) / sigma * scale + bias over `axes` (absolute, the batch never among them)."""
    b, x = ctx.b, node.input[0]
    mean = b.reduce("ReduceMean", x, axes)
    centred = b.op("Sub", [x, mean])
    variance = b.reduce("ReduceMean", b.mul(centred, centred), axes)
    eps = b.const(np.float32(attrs(node).get("epsilon", 1e-5)))
    inverse = b.op("Div", [b.const(np.float32(1.0)), b.op("Sqrt", [b.op("Add", [variance, eps])])])
    x_hat = ctx.lift(b.mul(centred, inverse), False)
    scaled = b.mul(ctx.normal(g), scale)
    shifted = [axis + 1 for axis in axes]
    mean_g = b.reduce("ReduceMean", scaled, shifted)
    mean_gx = b.reduce("ReduceMean", b.mul(scaled, x_hat), shifted)
    inner = b.op("Sub", [b.op("Sub", [scaled, mean_g]), b.mul(x_hat, mean_gx)])
    return first(node, Grad(b.mul(inner, ctx.lift(inverse, False))))


RECORDS = (
    OpRecord("BatchNormalization", _batchnorm, layout="nchw", tensorrt=8.5, batch_fold="channel_affine"),
    OpRecord("LayerNormalization", _layernorm, layout="last_axis", tensorrt=8.6, per_token="last_axis_norm",
             batch_fold="axes", default_axis=-1),
    OpRecord("InstanceNormalization", _instancenorm, layout="nchw", tensorrt=8.5,
             tensorrt_note="scale and bias initializers; rank 3 to 5"),
    OpRecord("LpNormalization", _lp_normalization, tensorrt=8.5, batch_fold="axes", default_axis=-1),
)
