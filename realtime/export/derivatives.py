"""The derivative of each supported head op, written with standard ONNX ops.

A rule receives the gradient of a node's output for every target and returns
the gradients of its inputs. Gradients carry an extra target axis K after the
batch axis: [N, K, *dims]. Across Dense layers they travel features-first,
[F, N, K], so each weight is read as Gemm's first operand, the form onnxruntime
runs fastest and OpenVINO computes right when the forward shares that weight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.builder import GraphBuilder


@dataclass(frozen=True)
class Grad:
    """A gradient tensor and its form; `onehot` is the seed at the logits, not built until needed."""

    name: str
    features_first: bool = False
    onehot: bool = False


class RuleError(ValueError):
    """A supported op type with attributes or inputs this backward cannot handle."""


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class Context:
    """What every rule shares: the builder, static shapes, constant values, classes and [N, K]."""

    def __init__(
        self,
        builder: GraphBuilder,
        shapes: Mapping[str, tuple[int, ...]],
        classes: str,
        num_classes: int,
        guided: bool = False,
        wanted: frozenset[str] = frozenset(),
        head_nodes: Sequence[onnx.NodeProto] = (),
    ) -> None:
        self.b = builder
        self.guided = guided  # guided backpropagation: ReLUs pass only positive gradients
        self.wanted = wanted  # tensors whose own gradient must be built (captures, the target)
        self.shapes = shapes
        self.classes = classes
        self.num_classes = num_classes
        self.nk = builder.op("Shape", [classes], hint="nk")
        self._inits = {init.name: init for init in builder.graph.initializer}
        self._constant_nodes = {n.output[0]: n for n in builder.graph.node if n.op_type == "Constant"}
        self._copies = {n.output[0]: n.input[0] for n in builder.graph.node if n.op_type == "Identity"}
        # the forward nodes the gradient flows through: other readers (outputs, other passes) carry none
        self._producers = {name: n for n in head_nodes for name in n.output}
        self._readers = Counter(name for n in head_nodes for name in n.input)
        self._lifted: dict[tuple[str, bool], str] = {}

    def value(self, name: str) -> np.ndarray | None:
        """The value of a constant input (also through Identity copies), or None for a computed tensor."""
        while name in self._copies and name not in self._inits:
            name = self._copies[name]
        if name in self._inits:
            return numpy_helper.to_array(self._inits[name])
        node = self._constant_nodes.get(name)
        if node is not None:
            return np.asarray(numpy_helper.to_array(attrs(node)["value"]))
        return None

    def relu_before(self, x: str) -> onnx.NodeProto | None:
        """The ReLU that made `x`, when one head node reads `x` and nobody wants x's own gradient.

        Its derivative can then be taken where that reader is cheaper (a max pool's output: 4x smaller).
        """
        node = self._producers.get(x)
        if node is None or node.op_type != "Relu" or self._readers[x] != 1 or x in self.wanted:
            return None
        return node

    def dims(self, name: str) -> tuple[int, ...]:
        if name not in self.shapes:
            raise RuleError(f"tensor {name!r} has no static shape; export the model with fixed spatial sizes")
        return self.shapes[name]

    # ----------------------------------------------------------------- forms

    def materialize(self, g: Grad) -> Grad:
        """The seed as a [N, K, C] one-hot of the classes."""
        if not g.onehot:
            return g
        b = self.b
        classes = b.unsqueeze(self.classes, [2])
        arange = b.const(np.arange(self.num_classes, dtype=np.int64), "arange")
        return Grad(b.mask(b.op("Equal", [classes, arange])))

    def normal(self, g: Grad) -> str:
        g = self.materialize(g)
        return self.b.transpose(g.name, [1, 2, 0]) if g.features_first else g.name

    def features_first(self, g: Grad) -> str:
        g = self.materialize(g)
        return g.name if g.features_first else self.b.transpose(g.name, [2, 0, 1])

    def lift(self, x: str, features_first: bool) -> str:
        """A forward tensor [N, *dims] shaped to broadcast against a gradient of the given form."""
        key = (x, features_first)
        if key not in self._lifted:
            if features_first:
                self._lifted[key] = self.b.unsqueeze(self.b.transpose(x, [1, 0]), [2])
            else:
                self._lifted[key] = self.b.unsqueeze(x, [1])
        return self._lifted[key]

    def unflat(self, x: str, dims: tuple[int, ...]) -> str:
        """[N*K, *dims] (how convolutions take the targets) -> [N, K, *dims], N and K read from the classes."""
        return self.b.reshape(x, self.b.concat([self.nk, self.b.ints(list(dims))]))

    def back_to(self, g: str, dims: tuple[int, ...]) -> str:
        """A normal-form gradient reshaped to [N, K, *dims]."""
        return self.b.reshape(g, [0, 0, *dims])


Rule = Callable[[Context, onnx.NodeProto, Grad, tuple[int, ...]], dict[str, Grad]]
RULES: dict[str, Rule] = {}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for op_type in op_types:
            RULES[op_type] = fn
        return fn

    return register


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


@rule("Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh")
def _activation(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    g = ctx.materialize(g)
    factor = ctx.lift(_factor(ctx, node), g.features_first)
    return {node.input[0]: Grad(ctx.b.mul(g.name, factor), g.features_first)}


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


@rule("Relu")
def _relu(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    return {node.input[0]: relu_back(ctx, g, node.output[0])}


@rule("Identity", "Dropout")
def _identity(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    return {node.input[0]: g}


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


@rule("Add", "Sub", "Sum")
def _add(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    out: dict[str, Grad] = {}
    for p in carried:
        contribution = _unbroadcast(ctx, g, node.input[p], node.output[0])
        if node.op_type == "Sub" and p == 1:
            contribution = Grad(ctx.b.op("Neg", [ctx.normal(contribution)]))
        out[node.input[p]] = contribution
    return out


@rule("Mul")
def _mul(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    """Product rule; the other factor is a constant or the forward value of a tensor (SiLU: x * sigmoid(x))."""
    g = ctx.materialize(g)
    out: dict[str, Grad] = {}
    for p in carried:
        other = node.input[1 - p]
        value = ctx.value(other)
        if value is not None and value.size == 1:
            product = Grad(ctx.b.mul(g.name, other), g.features_first)
        elif value is not None:
            product = Grad(ctx.b.mul(ctx.normal(g), other))
        else:
            product = Grad(ctx.b.mul(ctx.normal(g), ctx.lift(other, False)))
        out[node.input[p]] = _unbroadcast(ctx, product, node.input[p], node.output[0])
    return out


@rule("Div")
def _div(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    if carried != (0,) or ctx.value(node.input[1]) is None:
        raise RuleError(f"node {node.name!r}: only division by a constant is supported")
    g = ctx.materialize(g)
    divisor = node.input[1]
    if ctx.value(divisor).size == 1:  # type: ignore[union-attr]
        return {node.input[0]: Grad(ctx.b.op("Div", [g.name, divisor]), g.features_first)}
    quotient = Grad(ctx.b.op("Div", [ctx.normal(g), divisor]))
    return {node.input[0]: _unbroadcast(ctx, quotient, node.input[0], node.output[0])}
