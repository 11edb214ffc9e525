"""The backward of a classifier head, appended to its ONNX graph: d logit[class] / d map for each target.

One builder for every importer. It walks the head's nodes in reverse, asks
each op's rule (derivatives, spatial) for its input gradients and sums the
contributions where a tensor feeds several nodes. The `pooled` variant stops
where the spatial sum of the gradient is already known: at a global pool, or
at the first Dense after a flatten, through that Dense's spatially summed
kernel (49x smaller than VGG16's fc1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx

from realtime.export import body, dense, spatial  # noqa: F401  (importing them registers their rules)
from realtime.export.builder import GraphBuilder
from realtime.export.dense import pooled_dense
from realtime.export.derivatives import RULES, Context, Grad, RuleError, attrs
from realtime.export.head import NCHW, Head

SUPPORTED_OPS = tuple(sorted(RULES))


@dataclass(frozen=True)
class PooledStop:
    """Where the pooled backward can stop, and how to read the spatial sum there."""

    node: str
    kind: str  # "global": the gradient at this node's output is the sum; "dense": through a pooled kernel
    flat_dims: tuple[int, ...] = ()
    channel_axis: int = 1


def _non_overlapping(node: onnx.NodeProto) -> bool:
    a = attrs(node)
    kernel = list(a.get("kernel_shape", []))
    return (kernel == list(a.get("strides", kernel)) and not any(a.get("pads", []))) or kernel == [1, 1]


def pooled_stop(head: Head) -> PooledStop | None:
    """Follow the map through value-moving ops to a global pool or a flatten-Dense, if the chain allows."""
    current, channel = head.target, (1 if head.layout == NCHW else 3)
    flat: tuple[tuple[int, ...], int] | None = None
    for node in head.nodes:
        if current not in node.input:
            continue
        if flat is not None:
            if node.op_type in ("Gemm", "MatMul") and node.input[0] == current:
                return PooledStop(node.name, "dense", flat[0], flat[1])
            return None
        op = node.op_type
        if (op in ("MaxPool", "AveragePool") and channel == 1 and _non_overlapping(node)) or op in (
            "Identity",
            "Dropout",
        ):
            pass
        elif op == "Transpose":
            perm = list(attrs(node).get("perm", []))
            if not perm or perm[0] != 0:
                return None
            channel = perm.index(channel)
        elif (op in ("GlobalAveragePool", "GlobalMaxPool") and channel == 1) or (
            op == "ReduceMean" and sorted(_axes(node)) == sorted({1, 2, 3} - {channel})
        ):
            return PooledStop(node.name, "global")
        elif op in ("Flatten", "Reshape") and len(head.shapes.get(node.output[0], ())) == 1:
            flat = (head.shapes[current], channel)
        else:
            return None
        current = node.output[0]
    return None


def _axes(node: onnx.NodeProto) -> list[int]:
    """Attribute axes only: with axes as an input (opset 18) the pooled variant sums the full gradient instead."""
    listed = attrs(node).get("axes")
    return [int(a) % 4 for a in listed] if listed is not None else []


@dataclass(frozen=True)
class Backward:
    """Names of what the builder added: the full gradient [N,K,*target dims] or the pooled sum [N,K,C],
    and the full gradients at the other tensors asked for on the way down."""

    gradients: str | None
    spatial_sum: str
    captured: dict[str, str] = field(default_factory=dict)


def build_backward(
    builder: GraphBuilder, head: Head, classes: str, pooled: bool, capture: Sequence[str] = (), guided: bool = False
) -> Backward:
    """Append the head's backward for `classes` [N, K]; with `pooled`, stop as early as the sum allows.

    `capture` names tensors between the target and the logits whose gradients are wanted too (one
    backward serves every layer); `guided` makes it guided backpropagation (ReLUs pass positive
    gradients only).
    """
    wanted = frozenset((*capture, head.target))
    ctx = Context(builder, head.shapes, classes, head.num_classes, guided, wanted, head.nodes)
    stop = pooled_stop(head) if pooled else None
    pending: dict[str, list[Grad]] = {head.logits: [Grad("", onehot=True)]}
    carried_by = _carried_positions(head)
    captured: dict[str, str] = {}
    for node in reversed(head.nodes):
        contributions = pending.pop(node.output[0], None)
        if not contributions:
            continue
        g = _sum(ctx, contributions)
        if node.output[0] in capture:
            captured[node.output[0]] = ctx.normal(g)
        if stop is not None and node.name == stop.node:
            return Backward(None, _spatial_sum_at(ctx, node, g, stop, carried_by[node.name], head))
        apply = RULES.get(node.op_type)
        if apply is None:
            raise RuleError(f"node {node.name!r} ({node.op_type}) has no derivative rule")
        for name, grad in apply(ctx, node, g, carried_by[node.name]).items():
            pending.setdefault(name, []).append(grad)
    target = pending.pop(head.target, None)
    if not target:
        raise RuleError(f"no gradient reached {head.target!r}")
    gradients = ctx.normal(_sum(ctx, target))
    spatial_axes = [a + 1 for a in head.spatial_axes()]
    total = builder.reduce("ReduceSum", gradients, spatial_axes, keepdims=False)
    missing = [name for name in capture if name not in captured and name != head.target]
    if missing:
        raise RuleError(f"no gradient reached {', '.join(missing)} on the way to {head.target!r}")
    return Backward(gradients, total, {**captured, head.target: gradients})


def _spatial_sum_at(
    ctx: Context, node: onnx.NodeProto, g: Grad, stop: PooledStop, carried: tuple[int, ...], head: Head
) -> str:
    channels = head.map_shape[2]
    if stop.kind == "dense":
        return pooled_dense(ctx, node, g, carried, stop.flat_dims, stop.channel_axis)
    return ctx.b.reshape(ctx.normal(g), [0, 0, channels])


def _carried_positions(head: Head) -> dict[str, tuple[int, ...]]:
    """For each head node, which inputs carry the gradient (come from the target)."""
    carried = {head.target}
    positions: dict[str, tuple[int, ...]] = {}
    for node in head.nodes:
        positions[node.name] = tuple(i for i, name in enumerate(node.input) if name in carried)
        carried.add(node.output[0])
    return positions


def _sum(ctx: Context, grads: list[Grad]) -> Grad:
    if len(grads) == 1:
        return grads[0]
    total = ctx.normal(grads[0])
    for grad in grads[1:]:
        total = ctx.b.op("Add", [total, ctx.normal(grad)])
    return Grad(total)
