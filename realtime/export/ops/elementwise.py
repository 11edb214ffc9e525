"""Element-wise ops: activations, ReLU, identity, and the arithmetic of Add, Sub, Mul, Div."""

from __future__ import annotations

import numpy as np
import onnx

from realtime.export.graph.index import attrs
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


def _unbroadcast(ctx: Context, g: Grad, in_name: str, out_name: str) -> Grad:
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
        contribution = _unbroadcast(ctx, g, node.input[p], node.output[0])
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
        out[p] = _unbroadcast(ctx, product, node.input[p], node.output[0])
    return grads_at(node, out)


def _div(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    if carried != (0,) or ctx.value(node.input[1]) is None:
        raise RuleError(f"node {node.name!r}: only division by a constant is supported")
    g = ctx.materialize(g)
    divisor = node.input[1]
    if ctx.value(divisor).size == 1:  # type: ignore[union-attr]
        return first(node, Grad(ctx.b.op("Div", [g.name, divisor]), g.features_first))
    quotient = Grad(ctx.b.op("Div", [ctx.normal(g), divisor]))
    return first(node, _unbroadcast(ctx, quotient, node.input[0], node.output[0]))


RECORDS = (
    *(OpRecord(op, _activation, tensorrt=True) for op in ("Clip", "LeakyRelu", "HardSigmoid", "HardSwish")),
    *(OpRecord(op, _activation, tensorrt=True) for op in ("Sigmoid", "Tanh")),
    OpRecord("Relu", _relu, tensorrt=True, int8="relu"),
    OpRecord("Identity", _identity, plumbing=True, logits_view=True, pooled="moves", tensorrt=True,
             folds_on_constants=True),
    OpRecord("Dropout", _identity, plumbing=True, pooled="moves", tensorrt=True, tensorrt_note="inference only"),
    OpRecord("Add", _add, grad_inputs="all", tensorrt=True, folds_on_constants=True),
    OpRecord("Sub", _add, grad_inputs="all", tensorrt=True, folds_on_constants=True),
    OpRecord("Sum", _add, grad_inputs="all", tensorrt=True),
    OpRecord("Mul", _mul, grad_inputs="all", tensorrt=True, folds_on_constants=True),
    OpRecord("Div", _div, tensorrt=True, folds_on_constants=True),
)  # fmt: skip
