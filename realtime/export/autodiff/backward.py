"""The backward of a classifier head, appended to its ONNX graph: d logit[class] / d map for each target.

One builder for every importer. It walks the head's nodes in reverse, asks
each op's rule (its record in ops/) for its input gradients and sums the
contributions where a tensor feeds several nodes. The `pooled` variant stops
where the spatial sum of the gradient is already known: at a global pool, or
at the first Dense after a flatten, through that Dense's spatially summed
kernel (49x smaller than VGG16's fc1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from realtime.export.autodiff.head import Head
from realtime.export.graph.builder import GraphBuilder
from realtime.export.graph.index import attrs, perm
from realtime.export.graph.layout import NCHW
from realtime.export.ops import record
from realtime.export.ops.context import Context, Grad, RuleError
from realtime.export.ops.dense import pooled_dense
from realtime.export.ops.geometry import non_overlapping_window


@dataclass(frozen=True)
class PooledStop:
    """Where the pooled backward can stop, and how to read the spatial sum there."""

    output: str  # the stopping node's output tensor (node names may be empty: onnx's helper leaves them so)
    kind: str  # "global": the gradient at this node's output is the sum; "dense": through a pooled kernel
    flat_dims: tuple[int, ...] = ()
    channel_axis: int = 1


def pooled_stop(head: Head, value: Callable[[str], np.ndarray | None] = lambda name: None) -> PooledStop | None:
    """Follow the map through value-moving ops to a global pool or a flatten-Dense, if the chain allows.

    Each op's role on this walk is its record's `pooled` field; the conditions on it are here.
    """
    current, channel = head.target, (1 if head.layout == NCHW else 3)
    flat: tuple[tuple[int, ...], int] | None = None
    for node in head.nodes:
        if current not in node.input:
            continue
        role = record(node.op_type).pooled
        if flat is not None:
            if role == "dense" and node.input[0] == current:
                return PooledStop(node.output[0], "dense", flat[0], flat[1])
            return None
        sizes = (head.shapes.get(node.input[0], (0,))[1:], head.shapes.get(node.output[0], (0,))[1:])
        if (role == "window" and channel == 1 and non_overlapping_window(node, *sizes) is not None) or role == "moves":
            pass
        elif role == "permutes":
            order = perm(node)
            if not order or order[0] != 0:
                return None
            channel = order.index(channel)
        elif (role == "global" and channel == 1) or (
            role == "reduce" and sorted(_axes(node, value)) == sorted({1, 2, 3} - {channel})
        ):
            return PooledStop(node.output[0], "global")
        elif role == "flattens" and len(head.shapes.get(node.output[0], ())) == 1:
            flat = (head.shapes[current], channel)
        else:
            return None
        current = node.output[0]
    return None


def _axes(node: onnx.NodeProto, value: Callable[[str], np.ndarray | None]) -> list[int]:
    """A reduction's axes, as an attribute or (opset 18 on) a constant input; [] when not constant."""
    listed = attrs(node).get("axes")
    if listed is None and len(node.input) > 1 and node.input[1]:
        listed = value(node.input[1])
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
    stop = pooled_stop(head, ctx.value) if pooled else None
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
        if stop is not None and node.output[0] == stop.output:
            return Backward(None, _spatial_sum_at(ctx, node, g, stop, carried_by[node.output[0]], head))
        apply = record(node.op_type).rule
        if apply is None:
            raise RuleError(f"node {node.name!r} ({node.op_type}) has no derivative rule")
        carried = carried_by[node.output[0]]
        grads = apply(ctx, node, g, carried)
        if len(grads) != len(node.input) or any(grad is not None and p not in carried for p, grad in enumerate(grads)):
            raise RuleError(f"the {node.op_type} rule answered for inputs {len(grads)} / {carried}: a bug in ops/")
        for name, grad in zip(node.input, grads, strict=True):
            if grad is not None:
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
    """For each head node (by its output: names may be empty), which inputs carry the gradient."""
    carried = {head.target}
    positions: dict[str, tuple[int, ...]] = {}
    for node in head.nodes:
        positions[node.output[0]] = tuple(i for i, name in enumerate(node.input) if name in carried)
        carried.add(node.output[0])
    return positions


def _sum(ctx: Context, grads: list[Grad]) -> Grad:
    if len(grads) == 1:
        return grads[0]
    joined = ctx.joined(grads)
    if joined is not None:
        return joined
    total = ctx.normal(grads[0])
    for grad in grads[1:]:
        total = ctx.b.op("Add", [total, ctx.normal(grad)])
    return Grad(total)
