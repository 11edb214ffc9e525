"""Pooling: max and average pools (windowed and global).

Max pooling routes each window's gradient to its first maximum in row-major
order, as torch and TF do; an equality mask alone would count ties several times.
Non-overlapping windows (kernel equal to stride, no padding: what classifier
heads use) take a fast path; overlapping or padded ones (a ResNet stem) the general one.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx

from realtime.export.ops.context import Context, Grad, Grads, RuleError, first
from realtime.export.ops.elementwise import relu_back
from realtime.export.ops.geometry import Window, pool_window
from realtime.export.ops.record import OpRecord
from realtime.export.ops.resampling import separable_backward


def _window(ctx: Context, node: onnx.NodeProto) -> Window:
    """The node's window, with sizes for SAME padding; a RuleError says what is not supported."""
    try:
        return pool_window(node, ctx.dims(node.input[0])[1:], ctx.dims(node.output[0])[1:])
    except ValueError as exc:
        raise RuleError(f"{exc}; pick a layer after it") from exc


def _tiles(ctx: Context, node: onnx.NodeProto) -> tuple[int, int]:
    """(ph, pw) of a non-overlapping pool, or a RuleError saying what is not supported."""
    window, dims = _window(ctx, node), ctx.dims(node.input[0])
    if not window.non_overlapping:
        raise RuleError(
            f"node {node.name!r} ({node.op_type} kernel {list(window.kernel)}, strides {list(window.strides)}, "
            f"pads {list(window.pads)}): only non-overlapping pools without padding are supported; pick a layer "
            "after it"
        )
    kernel = window.kernel
    if window.ceil_mode and (dims[1] % kernel[0] or dims[2] % kernel[1]):
        raise RuleError(f"node {node.name!r}: ceil_mode with a partial last window is not supported")
    return kernel


def _pad_back(ctx: Context, g: str, cropped: tuple[int, int], full: tuple[int, int]) -> str:
    """Zero gradient for the rows and columns a floor-mode pool never read."""
    if cropped == full:
        return g
    pads = [0, 0, 0, 0, 0, 0, 0, 0, full[0] - cropped[0], full[1] - cropped[1]]
    return ctx.b.op("Pad", [g, ctx.b.ints(pads)])


def first_maximum(ctx: Context, values: str, axis: int) -> str:
    """1.0 at the first maximum along `axis`, 0.0 elsewhere: relu(is-max - how many maxima came before).

    Written with a running count, not as ArgMax: runtimes break ArgMax ties
    differently (OpenVINO's CPU plugin does not take the first), and a window of
    ReLU zeros is all ties.
    """
    b = ctx.b
    is_max = b.mask(b.op("Equal", [values, b.reduce("ReduceMax", values, [axis])]))
    before = b.op("CumSum", [is_max, b.const(np.int64(axis), "axis")], exclusive=1)
    return b.op("Relu", [b.op("Sub", [is_max, before])])


def _geometry(ctx: Context, node: onnx.NodeProto) -> tuple[int, int, int, int, int, int, int]:
    """(channels, height, width, ph, pw, ho, wo) of a non-overlapping pool's input, window and output."""
    channels, height, width = ctx.dims(node.input[0])
    ph, pw = _tiles(ctx, node)
    return channels, height, width, ph, pw, height // ph, width // pw


def _maxpool(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """Each window's gradient to its first maximum, in the input's own layout.

    The maxima are ranked by a constant that falls in row-major order within each window; a max
    pool of the ranks picks the first, and nearest-neighbour Resize spreads values over windows.
    Every step is a large element-wise op or a pool, which onnxruntime runs fast (window offsets as
    an axis took 40 ms of VGG16's guided graph in transposes and DepthToSpace). A ReLU that only
    this pool reads is taken at the pool's output: the maximum is where the gradient lands, and it
    is positive iff the ReLU was open there.
    """
    b, x = ctx.b, node.input[0]
    try:
        channels, height, width, ph, pw, ho, wo = _geometry(ctx, node)
    except RuleError:
        return first(node, Grad(_overlapping_maxpool(ctx, node, g)))
    if (ph, pw) == (1, 1):
        return first(node, g)
    relu = ctx.relu_before(x)
    if relu is not None:
        g = relu_back(ctx, g, node.output[0])
    xc = x if (ho * ph, wo * pw) == (height, width) else b.slice(x, [0, 0], [ho * ph, wo * pw], [2, 3])
    scales = b.const(np.asarray([1, 1, ph, pw], np.float32), "scales")

    def up(t: str) -> str:
        return b.op("Resize", [t, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor")  # fmt: skip

    rank = np.tile((ph * pw - np.arange(ph * pw, dtype=np.float32)).reshape(ph, pw), (ho, wo))[None, None]
    score = b.mul(b.mask(b.op("Equal", [xc, up(node.output[0])])), b.const(rank, "first_rank"))
    best = b.op("MaxPool", [score], kernel_shape=[ph, pw], strides=[ph, pw])
    offset = b.op("Sub", [b.const(np.float32(1.0)), best])
    onehot = b.op("Relu", [b.op("Add", [score, up(offset)])])  # 1 at the best-ranked maximum, <= 0 elsewhere
    grads = up(b.reshape(ctx.normal(g), [-1, channels, ho, wo]))
    routed = b.mul(ctx.unflat(grads, (channels, ho * ph, wo * pw)), b.unsqueeze(onehot, [1]))
    back = Grad(_pad_back(ctx, routed, (ho * ph, wo * pw), (height, width)))
    # with the ReLU taken here, the ReLU node passes this on unchanged (Grad.relu_taken)
    return first(node, replace(back, relu_taken=relu is not None))


def _overlapping_maxpool(ctx: Context, node: onnx.NodeProto, g: Grad) -> str:
    """Windows that overlap or pad (a ResNet stem's 3x3, stride 2): each kernel offset is a strided
    slice of the padded input; the first maximum over offsets takes the window's gradient, and each
    offset's share is spread back to its strided positions and summed."""
    b, x = ctx.b, node.input[0]
    channels, height, width = ctx.dims(x)
    _, ho, wo = ctx.dims(node.output[0])
    window = _window(ctx, node)
    if window.dilations != (1, 1):
        raise RuleError(f"node {node.name!r} (MaxPool, dilations {list(window.dilations)}): only undilated pools")
    kernel, strides, pads = list(window.kernel), list(window.strides), list(window.pads)
    top, left = pads[0], pads[1]
    hp = max(height + pads[0] + pads[2], (ho - 1) * strides[0] + kernel[0])
    wp = max(width + pads[1] + pads[3], (wo - 1) * strides[1] + kernel[1])
    lowest = b.const(np.float32(-3.0e38), "lowest")
    padded = b.op("Pad", [x, b.ints([0, 0, top, left, 0, 0, hp - height - top, wp - width - left]), lowest])
    offsets = [(i, j) for i in range(kernel[0]) for j in range(kernel[1])]
    span = ((ho - 1) * strides[0] + 1, (wo - 1) * strides[1] + 1)
    taken = [
        b.unsqueeze(b.op("Slice", [padded, b.ints([i, j]), b.ints([i + span[0], j + span[1]]), b.ints([2, 3]),
                                    b.ints(strides)]), [4])
        for i, j in offsets
    ]  # fmt: skip
    onehot = first_maximum(ctx, b.concat(taken, axis=4), axis=4)  # [N,C,ho,wo,P]
    routed = b.mul(b.unsqueeze(onehot, [1]), b.unsqueeze(ctx.normal(g), [5]))  # [N,K,C,ho,wo,P]
    total = None
    for p, (i, j) in enumerate(offsets):
        share = b.reshape(b.slice(routed, [p], [p + 1], [5]), [0, 0, channels, ho, 1, wo, 1])
        gaps = b.op("Pad", [share, b.ints([0] * 7 + [0, 0, 0, 0, strides[0] - 1, 0, strides[1] - 1])])
        grid = b.reshape(gaps, [0, 0, channels, ho * strides[0], wo * strides[1]])
        after = (hp - i - ho * strides[0], wp - j - wo * strides[1])
        placed = b.op("Pad", [grid, b.ints([0, 0, 0, i, j, 0, 0, 0, after[0], after[1]])])
        total = placed if total is None else b.op("Add", [total, placed])
    assert total is not None
    return b.slice(total, [top, left], [top + height, left + width], [3, 4])


def _avgpool(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """Non-overlapping windows: each cell's gradient spread over its window; overlapping or padded ones
    (Inception's 3x3 stride 1, Res2Net's) through their measured matrices (ops/resampling.py)."""
    b = ctx.b
    try:
        channels, height, width, ph, pw, ho, wo = _geometry(ctx, node)
        if any(_window(ctx, node).pads):
            raise RuleError("padded")
    except RuleError:
        return separable_backward(ctx, node, g)
    if (ph, pw) == (1, 1):
        return first(node, g)
    cells = b.reshape(b.scale(ctx.normal(g), 1.0 / (ph * pw)), [0, 0, channels, ho, 1, wo, 1])
    spread = b.op("Expand", [cells, b.ints([1, 1, 1, 1, ph, 1, pw])])
    back = b.reshape(spread, [0, 0, channels, ho * ph, wo * pw])
    return first(node, Grad(_pad_back(ctx, back, (ho * ph, wo * pw), (height, width))))


def _gap(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    dims = ctx.dims(node.input[0])
    area = int(np.prod(dims[1:]))
    spread = ctx.b.op("Expand", [ctx.b.scale(ctx.normal(g), 1.0 / area), ctx.b.ints([1, 1, 1, *dims[1:]])])
    return first(node, Grad(spread))


def _gmp(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    b, x = ctx.b, node.input[0]
    dims = ctx.dims(x)
    area = int(np.prod(dims[1:]))
    onehot = first_maximum(ctx, b.reshape(x, [0, dims[0], area]), axis=2)  # [N,C,HW]
    routed = b.mul(b.unsqueeze(onehot, [1]), b.reshape(ctx.normal(g), [0, 0, dims[0], 1]))
    return first(node, Grad(ctx.back_to(routed, dims)))


RECORDS = (
    OpRecord("MaxPool", _maxpool, layout="nchw", plumbing=True, pooled="window", tensorrt=8.5,
             tensorrt_note="without its Indices output", int8="pool"),
    OpRecord("AveragePool", _avgpool, layout="nchw", plumbing=True, pooled="window", tensorrt=8.5),
    OpRecord("GlobalAveragePool", _gap, layout="nchw", pooled="global", tensorrt=8.5),
    OpRecord("GlobalMaxPool", _gmp, layout="nchw", pooled="global", tensorrt=8.5),
)  # fmt: skip
