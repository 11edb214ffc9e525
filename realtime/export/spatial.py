"""Derivatives of ops that move values between positions: pools, reshapes, transposes, reductions, norms.

Max pooling routes each window's gradient to its first maximum in row-major
order, as torch and TF do; an equality mask alone would count ties several times.
Pools are supported where windows do not overlap (kernel equal to stride, no
padding), which is what classifier heads use.
"""

from __future__ import annotations

import numpy as np
import onnx

from realtime.export.derivatives import Context, Grad, RuleError, attrs, relu_back, rule


def _normal_back(ctx: Context, g: Grad, x: str) -> dict[str, Grad]:
    """Any op that only rearranges a batch-major tensor: reshape the gradient back to x's dims."""
    return {x: Grad(ctx.back_to(ctx.normal(g), ctx.dims(x)))}


@rule("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def _reshape(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    if node.op_type == "Flatten" and attrs(node).get("axis", 1) != 1:
        raise RuleError(f"node {node.name!r}: Flatten must keep the batch axis (axis=1)")
    if g.features_first and len(ctx.dims(node.input[0])) == 1:
        return {node.input[0]: g}  # [N, F] -> [N, F]: nothing moves
    return _normal_back(ctx, g, node.input[0])


@rule("Transpose")
def _transpose(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    perm = list(attrs(node).get("perm", []))
    if not perm or perm[0] != 0:
        raise RuleError(f"node {node.name!r}: a Transpose in the head must keep the batch axis first")
    inverse = [perm.index(i) for i in range(len(perm))]
    back = [0, 1, *(p + 1 for p in inverse[1:])]
    return {node.input[0]: Grad(ctx.b.transpose(ctx.normal(g), back))}


def _window(node: onnx.NodeProto, dims: tuple[int, ...]) -> tuple[int, int]:
    """(ph, pw) of a non-overlapping 2-D pool, or a RuleError saying what is not supported."""
    a = attrs(node)
    kernel = list(a.get("kernel_shape", []))
    strides = list(a.get("strides", kernel))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    dilations = list(a.get("dilations", [1, 1]))
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    overlapping = kernel != strides and kernel != [1, 1]
    if len(kernel) != 2 or overlapping or any(pads) or dilations != [1, 1] or auto_pad not in ("NOTSET", "VALID"):
        raise RuleError(
            f"node {node.name!r} ({node.op_type} kernel {kernel}, strides {strides}, pads {pads}): only "
            "non-overlapping pools without padding are supported; pick a layer after it"
        )
    if a.get("ceil_mode", 0) and (dims[1] % kernel[0] or dims[2] % kernel[1]):
        raise RuleError(f"node {node.name!r}: ceil_mode with a partial last window is not supported")
    return int(kernel[0]), int(kernel[1])


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
    ph, pw = _window(node, (channels, height, width))
    return channels, height, width, ph, pw, height // ph, width // pw


@rule("MaxPool")
def _maxpool(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
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
        return {x: Grad(_overlapping_maxpool(ctx, node, g))}
    if (ph, pw) == (1, 1):
        return {x: g}
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
    return {(relu.input[0] if relu is not None else x): back}


def _overlapping_maxpool(ctx: Context, node: onnx.NodeProto, g: Grad) -> str:
    """Windows that overlap or pad (a ResNet stem's 3x3, stride 2): each kernel offset is a strided
    slice of the padded input; the first maximum over offsets takes the window's gradient, and each
    offset's share is spread back to its strided positions and summed."""
    b, x = ctx.b, node.input[0]
    a = attrs(node)
    channels, height, width = ctx.dims(x)
    _, ho, wo = ctx.dims(node.output[0])
    kernel = [int(k) for k in a.get("kernel_shape", [])]
    strides = [int(s) for s in a.get("strides", [1, 1])]
    pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
    auto_pad = a.get("auto_pad", b"NOTSET")
    if len(kernel) != 2 or list(a.get("dilations", [1, 1])) != [1, 1] or auto_pad not in (b"NOTSET", "NOTSET"):
        raise RuleError(f"node {node.name!r} (MaxPool {kernel}, auto_pad {auto_pad!r}): 2-D pools with explicit pads")
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


@rule("AveragePool")
def _avgpool(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    b, x = ctx.b, node.input[0]
    channels, height, width, ph, pw, ho, wo = _geometry(ctx, node)
    if (ph, pw) == (1, 1):
        return {x: g}
    cells = b.reshape(b.scale(ctx.normal(g), 1.0 / (ph * pw)), [0, 0, channels, ho, 1, wo, 1])
    spread = b.op("Expand", [cells, b.ints([1, 1, 1, 1, ph, 1, pw])])
    back = b.reshape(spread, [0, 0, channels, ho * ph, wo * pw])
    return {x: Grad(_pad_back(ctx, back, (ho * ph, wo * pw), (height, width)))}


@rule("GlobalAveragePool")
def _gap(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    dims = ctx.dims(node.input[0])
    area = int(np.prod(dims[1:]))
    spread = ctx.b.op("Expand", [ctx.b.scale(ctx.normal(g), 1.0 / area), ctx.b.ints([1, 1, 1, *dims[1:]])])
    return {node.input[0]: Grad(spread)}


@rule("GlobalMaxPool")
def _gmp(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    b, x = ctx.b, node.input[0]
    dims = ctx.dims(x)
    area = int(np.prod(dims[1:]))
    onehot = first_maximum(ctx, b.reshape(x, [0, dims[0], area]), axis=2)  # [N,C,HW]
    routed = b.mul(b.unsqueeze(onehot, [1]), b.reshape(ctx.normal(g), [0, 0, dims[0], 1]))
    return {x: Grad(ctx.back_to(routed, dims))}


def reduce_axes(ctx: Context, node: onnx.NodeProto) -> list[int]:
    """A Reduce node's axes, normalised to the input's rank (axes moved from attribute to input at opset 18)."""
    rank = len(ctx.dims(node.input[0])) + 1
    listed = attrs(node).get("axes")
    if listed is None and len(node.input) > 1 and node.input[1]:
        listed = ctx.value(node.input[1])
        if listed is None:
            raise RuleError(f"node {node.name!r}: reduction axes must be constant")
    axes = sorted(int(a) % rank for a in (listed if listed is not None else range(rank)))
    if 0 in axes:
        raise RuleError(f"node {node.name!r} reduces over the batch axis")
    return axes


@rule("ReduceMean")
def _reduce_mean(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    b, dims = ctx.b, ctx.dims(node.input[0])
    axes = reduce_axes(ctx, node)
    grad = ctx.normal(g)
    if not attrs(node).get("keepdims", 1):
        grad = b.unsqueeze(grad, [a + 1 for a in axes])
    count = int(np.prod([dims[a - 1] for a in axes]))
    spread = b.op("Expand", [b.scale(grad, 1.0 / count), b.ints([1, 1, *dims])])
    return {node.input[0]: Grad(spread)}


@rule("BatchNormalization")
def _batchnorm(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    a = attrs(node)
    scale, var = ctx.value(node.input[1]), ctx.value(node.input[4])
    if a.get("training_mode", 0) or scale is None or var is None:
        raise RuleError(f"node {node.name!r}: only inference BatchNormalization with constant statistics")
    factor = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(a.get("epsilon", 1e-5)))
    dims = ctx.dims(node.input[0])
    g = ctx.materialize(g)
    shaped = factor.reshape(-1, *([1] * (len(dims) - 1))) if not g.features_first else factor.reshape(-1, 1, 1)
    return {node.input[0]: Grad(ctx.b.mul(g.name, ctx.b.const(shaped, "bn_factor")), g.features_first)}


@rule("LayerNormalization")
def _layernorm(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    """dx = (g' - mean(g') - x_hat * mean(g' * x_hat)) / sigma, with g' = g * scale, over the normalised axes."""
    b, x = ctx.b, node.input[0]
    a = attrs(node)
    rank = len(ctx.dims(x)) + 1
    first = int(a.get("axis", -1)) % rank
    if first == 0:
        raise RuleError(f"node {node.name!r} normalises over the batch axis")
    axes = list(range(first, rank))
    mean = b.reduce("ReduceMean", x, axes)
    centred = b.op("Sub", [x, mean])
    variance = b.reduce("ReduceMean", b.mul(centred, centred), axes)
    eps = b.const(np.float32(a.get("epsilon", 1e-5)))
    inverse = b.op("Div", [b.const(np.float32(1.0)), b.op("Sqrt", [b.op("Add", [variance, eps])])])
    x_hat = ctx.lift(b.mul(centred, inverse), False)
    scaled = b.mul(ctx.normal(g), node.input[1])
    shifted = [axis + 1 for axis in axes]
    mean_g = b.reduce("ReduceMean", scaled, shifted)
    mean_gx = b.reduce("ReduceMean", b.mul(scaled, x_hat), shifted)
    inner = b.op("Sub", [b.op("Sub", [scaled, mean_g]), b.mul(x_hat, mean_gx)])
    return {x: Grad(b.mul(inner, ctx.lift(inverse, False)))}
