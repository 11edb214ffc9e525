"""Ops that pick or repeat values: Slice, Gather (a class token, token selection), Expand, Where.

Indices, starts, ends and conditions must be constants (after the import has folded shape
arithmetic, they are); the gradient is put back where the values came from, zero elsewhere.
"""

from __future__ import annotations

import numpy as np
import onnx

from realtime.export.graph.index import attrs
from realtime.export.ops.context import Context, Grad, Grads, Padding, RuleError, first, grads_at
from realtime.export.ops.elementwise import unbroadcast
from realtime.export.ops.record import OpRecord


def _constant(ctx: Context, node: onnx.NodeProto, position: int, what: str) -> np.ndarray | None:
    if len(node.input) <= position or not node.input[position]:
        return None
    value = ctx.value(node.input[position])
    if value is None:
        raise RuleError(f"node {node.name!r} ({node.op_type}): its {what} must be constant")
    return value


def _slice(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """Step-1 slices: the gradient padded back with zeros to the input's extent (along one axis, as a
    Padding: the slices that tile it, q, k and v split out of one projection, are joined by one Concat).
    Other steps (LeViT's subsampling, a flip's -1, rotary embeddings' even and odd halves): each sliced axis
    scattered back by a one-hot product."""
    dims = ctx.dims(node.input[0])
    rank = len(dims) + 1
    starts, ends = _constant(ctx, node, 1, "starts"), _constant(ctx, node, 2, "ends")
    axes = _constant(ctx, node, 3, "axes")
    steps = _constant(ctx, node, 4, "steps")
    assert starts is not None and ends is not None
    axes = np.arange(len(starts)) if axes is None else axes
    if steps is not None and (steps != 1).any():
        return first(node, Grad(_stepped_back(ctx, node, g, starts, ends, axes, steps)))
    before, after = [0] * (rank + 1), [0] * (rank + 1)  # over [N, K, *dims]
    for start, end, axis in zip(starts, ends, axes, strict=True):
        axis = int(axis) % rank
        if axis == 0:
            raise RuleError(f"node {node.name!r} (Slice) slices the batch axis")
        size = dims[axis - 1]
        lo = int(np.clip(start + size if start < 0 else start, 0, size))
        hi = int(np.clip(end + size if end < 0 else end, 0, size))
        before[axis + 1], after[axis + 1] = lo, size - max(hi, lo)
    grad = ctx.normal(g)
    padded = [a for a in range(rank + 1) if before[a] or after[a]]
    if not padded:
        return first(node, Grad(grad))
    if len(padded) == 1:
        a = padded[0]
        extent = dims[a - 2]
        return first(node, Grad("", padding=Padding(grad, a, before[a], extent - after[a], extent, rank + 1)))
    return first(node, Grad(ctx.b.op("Pad", [grad, ctx.b.ints(before + after)])))


def _stepped_back(
    ctx: Context, node: onnx.NodeProto, g: Grad, starts: np.ndarray, ends: np.ndarray, axes: np.ndarray,
    steps: np.ndarray,
) -> str:  # fmt: skip
    """The gradient of a Slice with any steps: along each sliced axis, the picked positions (numpy's slicing
    of the same constants, which clamps as ONNX does) scattered back to the input's extent."""
    dims = list(ctx.dims(node.input[0]))
    current = list(ctx.dims(node.output[0]))
    rank = len(dims) + 1
    grad = ctx.normal(g)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis = int(axis) % rank
        if axis == 0:
            raise RuleError(f"node {node.name!r} (Slice) slices the batch axis")
        picked = np.arange(dims[axis - 1])[slice(int(start), int(end), int(step))]
        grad = _scatter(ctx, grad, current, axis, picked, dims[axis - 1])
        current[axis - 1] = dims[axis - 1]
    return grad


def _scatter(ctx: Context, grad: str, dims: list[int], axis: int, picked: np.ndarray, size: int) -> str:
    """grad [N, K, *dims] with `len(picked)` positions along `axis` -> [N, K, ...] with `size` there: each
    position's gradient added at its index (a one-hot product, the axis moved last and back)."""
    b = ctx.b
    onehot = np.zeros((len(picked), size), np.float32)
    onehot[np.arange(len(picked)), picked] = 1.0
    position, last = axis + 1, len(dims) + 1  # the axis in the gradient [N, K, *dims]
    order = [i for i in range(last + 1) if i != position] + [position]
    moved = b.transpose(grad, order) if position != last else grad
    spread = b.op("MatMul", [moved, b.const(onehot, "slice_onehot")])
    back = [order.index(i) for i in range(last + 1)]
    return b.transpose(spread, back) if position != last else spread


def _gather(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """Constant indices along a non-batch axis: one index or an ascending run padded back with zeros;
    any others scattered back by a one-hot product (repeated indices add up), [.., L] @ [L, D] -> [.., D]
    with the gathered axis last."""
    if carried != (0,):
        raise RuleError(f"node {node.name!r} (Gather): only constant indices are supported")
    indices = _constant(ctx, node, 1, "indices")
    assert indices is not None
    dims = ctx.dims(node.input[0])
    rank = len(dims) + 1
    axis = int(attrs(node).get("axis", 0)) % rank
    if axis == 0:
        raise RuleError(f"node {node.name!r} (Gather) picks along the batch axis")
    size = dims[axis - 1]
    flat = np.asarray(indices).reshape(-1) % size
    run = len(flat) > 0 and (flat == np.arange(flat[0], flat[0] + len(flat))).all()
    if np.asarray(indices).ndim <= 1 and run:
        return first(node, _padded_back(ctx, node, g, axis, flat, np.ndim(indices) == 0))
    # the gradient [N, K, *before, *indices.shape, *after] -> [N, K, *before, L, *after]
    before, after = list(dims[: axis - 1]), list(dims[axis:])
    grad = ctx.b.reshape(ctx.normal(g), [0, 0, *before, len(flat), *after])
    return first(node, Grad(_scatter(ctx, grad, [*before, len(flat), *after], axis, flat, size)))


def _padded_back(ctx: Context, node: onnx.NodeProto, g: Grad, axis: int, flat: np.ndarray, scalar: bool) -> Grad:
    """One index or a run of them (q, k or v out of a packed projection; a class token): the gradient
    padded back with zeros (Context.joined makes pieces that tile the axis one Concat), a copy where
    the one-hot product scatters through a matrix product."""
    grad = ctx.normal(g)
    if scalar:  # the picked axis was dropped: it comes back with extent 1
        grad = ctx.b.unsqueeze(grad, [axis + 1])
    dims = ctx.dims(node.input[0])
    start = int(flat[0])
    return Grad("", padding=Padding(grad, axis + 1, start, start + len(flat), dims[axis - 1], len(dims) + 2))


def _expand(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """Broadcasting undone by summing."""
    return first(node, unbroadcast(ctx, ctx.materialize(g), node.input[0], node.output[0]))


def _where(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """The gradient goes to x where the condition holds, to y elsewhere. A constant condition broadcasts from
    the right as it is; a computed one ([N, ...], such as torch's Where(IsNaN(p), 0, p) after each attention
    Softmax) gets the gradient's target axis."""
    constant = ctx.value(node.input[0]) is not None
    b, grad = ctx.b, ctx.normal(ctx.materialize(g))
    condition = node.input[0] if constant else ctx.lift(node.input[0], False)
    zero = b.const(np.float32(0.0))
    out: dict[int, Grad] = {}
    for p in (p for p in carried if p):  # the condition (input 0) is a mask: no gradient flows into it
        picked = b.op("Where", [condition, grad, zero] if p == 1 else [condition, zero, grad])
        out[p] = unbroadcast(ctx, Grad(picked), node.input[p], node.output[0])
    return grads_at(node, out)


RECORDS = (
    OpRecord("Slice", _slice, tensorrt=8.5, tensorrt_note="constant axes", tensorrt_constants=(3,), attention="moves",
             batch_fold="axes", axes_input=3),
    OpRecord("Gather", _gather, tensorrt=8.5, per_token="picks", attention="moves", batch_fold="axes"),
    OpRecord("Expand", _expand, tensorrt=8.5),
    OpRecord("Where", _where, grad_inputs="all", tensorrt=8.5, batch_fold="elementwise"),
)
