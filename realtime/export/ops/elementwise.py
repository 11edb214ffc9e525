"""Element-wise ops: activations, ReLU, identity, and the arithmetic of Add, Sub, Mul, Div."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx

from realtime.export.graph.index import attrs, text
from realtime.export.ops.context import Context, Grad, Grads, RuleError, first, grads_at
from realtime.export.ops.record import OpRecord

# --------------------------------------------------------------------------- elementwise


def _factor(ctx: Context, node: onnx.NodeProto) -> str:
    """dy/dx of a unary activation as a forward-shaped tensor [N, *dims]."""
    b, x, y = ctx.b, node.input[0], node.output[0]
    a = attrs(node)
    zero, one = b.const(np.float32(0.0)), b.const(np.float32(1.0))
    if node.op_type == "Clip":
        conditions = []
        if len(node.input) > 1 and node.input[1]:
            conditions.append(b.op("Greater", [x, node.input[1]]))
        if len(node.input) > 2 and node.input[2]:
            conditions.append(b.op("Less", [x, node.input[2]]))
        if not conditions:
            return b.op("Add", [b.mul(x, zero), one])
        return b.mask(conditions[0] if len(conditions) == 1 else b.op("And", conditions))
    if node.op_type == "LeakyRelu":
        alpha = b.const(np.float32(a.get("alpha", 0.01)))
        return b.op("Where", [b.op("Greater", [x, zero]), one, alpha])
    if node.op_type == "HardSigmoid":
        slope, offset = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        z = b.op("Add", [b.scale(x, slope), b.const(np.float32(offset))])
        inside = b.op("And", [b.op("Greater", [z, zero]), b.op("Less", [z, one])])
        return b.scale(b.mask(inside), slope)
    if node.op_type == "HardSwish":  # x * relu6(x + 3) / 6: 0 below -3, 1 above 3, x/3 + 1/2 between
        middle = b.op("Add", [b.scale(x, 1.0 / 3.0), b.const(np.float32(0.5))])
        upper = b.op("Where", [b.op("Greater", [x, b.const(np.float32(3.0))]), one, middle])
        return b.op("Where", [b.op("Less", [x, b.const(np.float32(-3.0))]), zero, upper])
    if node.op_type == "Sigmoid":
        return b.mul(y, b.op("Sub", [one, y]))
    if node.op_type == "Tanh":
        return b.op("Sub", [one, b.mul(y, y)])
    raise RuleError(f"no derivative for {node.op_type}")


def _activation(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    g = ctx.materialize(g)
    factor = ctx.lift(_factor(ctx, node), g.features_first)
    return first(node, Grad(ctx.b.mul(g.name, factor), g.features_first))


def relu_back(ctx: Context, g: Grad, relu_output: str) -> Grad:
    """g where the ReLU was open, 0 elsewhere; guided backpropagation also drops negative g.

    Open is read from the output (y > 0 iff x > 0), so a convolution that only the ReLU reads keeps
    its fused activation in onnxruntime (VGG16's guided graph lost 10 ms to separate ReLUs otherwise).
    The mask is a 0/1 float and a Mul: onnxruntime's Where took twice as long.
    """
    g = ctx.materialize(g)
    incoming = ctx.b.op("Relu", [g.name]) if ctx.guided else g.name
    opened = ctx.b.mask(ctx.b.op("Greater", [relu_output, ctx.b.const(np.float32(0.0))]))
    return Grad(ctx.b.mul(incoming, ctx.lift(opened, g.features_first)), g.features_first)


def _relu(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    if g.relu_taken:  # the max pool reading this ReLU took its derivative at the pool's smaller output
        return first(node, Grad(g.name, g.features_first))
    return first(node, relu_back(ctx, g, node.output[0]))


def _identity(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    return first(node, g)


def unbroadcast(ctx: Context, g: Grad, in_name: str, out_name: str) -> Grad:
    """Sum a gradient over the axes where `in_name` was broadcast to `out_name`'s shape."""
    in_dims, out_dims = ctx.shapes.get(in_name), ctx.dims(out_name)
    if in_dims == out_dims:
        return g
    if in_dims is None:
        raise RuleError(f"tensor {in_name!r} has no static shape")
    padded = (1,) * (len(out_dims) - len(in_dims)) + in_dims
    axes = [i + 2 for i, (a, o) in enumerate(zip(padded, out_dims, strict=True)) if a == 1 and o != 1]
    summed = ctx.b.reduce("ReduceSum", ctx.normal(g), axes) if axes else ctx.normal(g)
    return Grad(ctx.back_to(summed, in_dims))


def _add(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    out: dict[int, Grad] = {}
    for p in carried:
        contribution = unbroadcast(ctx, g, node.input[p], node.output[0])
        if node.op_type == "Sub" and p == 1:
            contribution = Grad(ctx.b.op("Neg", [ctx.normal(contribution)]))
        out[p] = contribution
    return grads_at(node, out)


def _mul(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """Product rule; the other factor is a constant or the forward value of a tensor (SiLU: x * sigmoid(x))."""
    g = ctx.materialize(g)
    out: dict[int, Grad] = {}
    for p in carried:
        other = node.input[1 - p]
        value = ctx.value(other)
        if value is not None and value.size == 1:
            product = Grad(ctx.b.mul(g.name, other), g.features_first)
        elif value is not None:
            product = Grad(ctx.b.mul(ctx.normal(g), other))
        else:
            product = Grad(ctx.b.mul(ctx.normal(g), ctx.lift(other, False)))
        out[p] = unbroadcast(ctx, product, node.input[p], node.output[0])
    return grads_at(node, out)


def _div(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """d(a/b) = g/b for a, and -g * (a/b) / b for b (a divisor computed from the map: a norm, a scale)."""
    g = ctx.materialize(g)
    divisor = node.input[1]
    constant = ctx.value(divisor)
    if carried == (0,) and constant is not None and constant.size == 1:
        return first(node, Grad(ctx.b.op("Div", [g.name, divisor]), g.features_first))
    b = ctx.b
    lifted = divisor if constant is not None else ctx.lift(divisor, False)
    out: dict[int, Grad] = {}
    if 0 in carried:
        out[0] = unbroadcast(ctx, Grad(b.op("Div", [ctx.normal(g), lifted])), node.input[0], node.output[0])
    if 1 in carried:
        quotient = b.op("Div", [ctx.lift(node.output[0], False), lifted])
        out[1] = unbroadcast(ctx, Grad(b.op("Neg", [b.mul(ctx.normal(g), quotient)])), divisor, node.output[0])
    return grads_at(node, out)


def _unary(ctx: Context, node: onnx.NodeProto, g: Grad, factor: str) -> Grads:
    """g times a forward-shaped slope [N, *dims]."""
    g = ctx.materialize(g)
    return first(node, Grad(ctx.b.mul(g.name, ctx.lift(factor, g.features_first)), g.features_first))


def _erf(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """d erf(x) = 2 / sqrt(pi) * exp(-x^2): the Erf of exact GELU, x * (1 + erf(x / sqrt 2)) / 2."""
    b, x = ctx.b, node.input[0]
    slope = b.scale(b.op("Exp", [b.op("Neg", [b.mul(x, x)])]), 2.0 / np.sqrt(np.pi))
    return _unary(ctx, node, g, slope)


def _gelu(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """ONNX's Gelu (opset 20): exact, Phi(x) + x phi(x); or tanh's approximation, differentiated as written."""
    b, x = ctx.b, node.input[0]
    one, half = b.const(np.float32(1.0)), b.const(np.float32(0.5))
    if text(attrs(node).get("approximate"), "none") == "tanh":
        c = float(np.sqrt(2.0 / np.pi))
        inner = b.scale(b.op("Add", [x, b.scale(b.mul(x, b.mul(x, x)), 0.044715)]), c)
        t = b.op("Tanh", [inner])
        d_inner = b.scale(b.op("Add", [one, b.scale(b.mul(x, x), 3 * 0.044715)]), c)
        slope = b.op("Add", [b.mul(half, b.op("Add", [one, t])),
                             b.mul(b.mul(half, x), b.mul(b.op("Sub", [one, b.mul(t, t)]), d_inner))])  # fmt: skip
        return _unary(ctx, node, g, slope)
    cdf = b.mul(half, b.op("Add", [one, b.op("Erf", [b.scale(x, 1.0 / np.sqrt(2.0))])]))
    pdf = b.scale(b.op("Exp", [b.scale(b.mul(x, x), -0.5)]), 1.0 / np.sqrt(2.0 * np.pi))
    return _unary(ctx, node, g, b.op("Add", [cdf, b.mul(x, pdf)]))


def _sqrt(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """d sqrt(x) = 1 / (2 sqrt(x)), from the output."""
    return _unary(ctx, node, g, ctx.b.op("Div", [ctx.b.const(np.float32(0.5)), node.output[0]]))


def _exp(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    return _unary(ctx, node, g, node.output[0])


def _neg(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    g = ctx.materialize(g)
    return first(node, Grad(ctx.b.op("Neg", [g.name]), g.features_first))


def _pow(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """d x^p = p x^(p-1) for a constant exponent (tanh-GELU's x^3, a norm's square)."""
    exponent = ctx.value(node.input[1])
    if carried != (0,) or exponent is None or exponent.size != 1:
        raise RuleError(f"node {node.name!r} (Pow): only a constant scalar exponent is supported")
    p = float(exponent.reshape(()))
    b, x = ctx.b, node.input[0]
    slope = (
        b.scale(b.op("Pow", [x, b.const(np.float32(p - 1.0))]), p)
        if p != 1.0
        else b.op("Add", [b.mul(x, b.const(np.float32(0.0))), b.const(np.float32(1.0))])
    )
    return _unary(ctx, node, g, slope)


RECORDS = tuple(
    replace(r, batch_fold="elementwise")  # every op here works element by element
    for r in (
        *(OpRecord(op, _activation, tensorrt=8.5) for op in ("Clip", "LeakyRelu", "HardSigmoid", "HardSwish")),
        *(OpRecord(op, _activation, tensorrt=8.5) for op in ("Sigmoid", "Tanh")),
        OpRecord("Relu", _relu, tensorrt=8.5, int8="relu", per_token="elementwise"),
        OpRecord("Identity", _identity, plumbing=True, logits_view=True, pooled="moves", tensorrt=8.5,
                 folds_on_constants=True, attention="moves"),
        OpRecord("Dropout", _identity, plumbing=True, pooled="moves", tensorrt=8.5, tensorrt_note="inference only",
                 attention="moves"),
        OpRecord("Add", _add, grad_inputs="all", tensorrt=8.5, folds_on_constants=True, per_token="elementwise",
                 attention="combines"),
        OpRecord("Sub", _add, grad_inputs="all", tensorrt=8.5, folds_on_constants=True, per_token="elementwise"),
        OpRecord("Sum", _add, grad_inputs="all", tensorrt=8.5),
        OpRecord("Mul", _mul, grad_inputs="all", tensorrt=8.5, folds_on_constants=True, per_token="elementwise",
                 attention="scales"),
        OpRecord("Div", _div, grad_inputs="all", tensorrt=8.5, folds_on_constants=True, per_token="elementwise",
                 attention="scales"),
        OpRecord("Erf", _erf, tensorrt=8.5, per_token="elementwise"),
        OpRecord("Gelu", _gelu, tensorrt=10, per_token="elementwise"),
        OpRecord("Sqrt", _sqrt, tensorrt=8.5, folds_on_constants=True, per_token="elementwise"),
        OpRecord("Exp", _exp, tensorrt=8.5),
        OpRecord("Neg", _neg, tensorrt=8.5),
        OpRecord("Pow", _pow, tensorrt=8.5),
    )
)  # fmt: skip
