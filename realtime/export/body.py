"""Derivatives of the convolutional body: convolutions, Concat and Pad.

With these the in-graph backward reaches any layer, not only the last map. A convolution's
gradient with respect to its input is the transposed convolution of the output gradient with
the same weights, strides, padding, dilation and groups (depthwise included); the output
padding restores input sizes that a stride rounded down. At stride 1 it is written as a plain
Conv with the kernel flipped and its channels swapped per group, which onnxruntime runs faster.
Batch and targets travel flattened together, [N*K, C, H, W], through either.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from realtime.export.derivatives import Context, Grad, RuleError, attrs, rule


def _explicit_pads(node: onnx.NodeProto, x: tuple[int, ...], y: tuple[int, ...], kernel: list[int]) -> list[int]:
    """The pads a Conv used, also when it said auto_pad."""
    a = attrs(node)
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    spatial = len(kernel)
    if auto_pad in ("NOTSET", ""):
        return list(a.get("pads", [0] * 2 * spatial))
    if auto_pad == "VALID":
        return [0] * 2 * spatial
    strides = list(a.get("strides", [1] * spatial))
    dilations = list(a.get("dilations", [1] * spatial))
    begin, end = [], []
    for i in range(spatial):
        total = max(0, (y[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - x[i])
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin + end


FEW_CHANNELS = 8  # below this many input channels, the backward stays a ConvTranspose (VGG16's first conv: 3)


@rule("Conv")
def _conv(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    if carried != (0,):
        raise RuleError(f"node {node.name!r} (Conv): its weights depend on the map; only data inputs are supported")
    weight = ctx.value(node.input[1])
    if weight is None:
        raise RuleError(f"node {node.name!r} (Conv): its weights are computed, not constant")
    x_dims, y_dims = ctx.dims(node.input[0]), ctx.dims(node.output[0])
    kernel = list(weight.shape[2:])
    spatial = len(kernel)
    a = attrs(node)
    strides = list(a.get("strides", [1] * spatial))
    dilations = list(a.get("dilations", [1] * spatial))
    pads = _explicit_pads(node, x_dims[1:], y_dims[1:], kernel)
    produced = [
        (y_dims[1 + i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - pads[i] - pads[spatial + i]
        for i in range(spatial)
    ]
    output_padding = [x_dims[1 + i] - produced[i] for i in range(spatial)]
    if any(p < 0 or p >= max(strides[i], dilations[i]) for i, p in enumerate(output_padding)):
        raise RuleError(f"node {node.name!r} (Conv): cannot invert its output size {y_dims} to {x_dims}")
    b = ctx.b
    flat = b.reshape(ctx.normal(g), [-1, *y_dims])
    group = int(a.get("group", 1))
    if strides == [1] * spatial and dilations == [1] * spatial and x_dims[0] >= FEW_CHANNELS:
        # stride 1: the backward-data is a plain convolution with the kernel flipped and its channels
        # swapped per group, which onnxruntime runs on its fast Conv kernels (VGG16's guided graph: 2.85x -> 2.47x).
        # Into a few channels (an RGB input) ConvTranspose is faster: the blocked Conv pads them to 16
        m, per_group = weight.shape[0], weight.shape[1]
        swapped = weight.reshape(group, m // group, per_group, *kernel).swapaxes(1, 2)
        flipped = np.flip(swapped.reshape(group * per_group, m // group, *kernel), axis=tuple(range(2, 2 + spatial)))
        back_pads = [k - 1 - p for k, p in zip(kernel * 2, pads, strict=True)]
        kernel_const = b.const(np.ascontiguousarray(flipped), "conv_backward_kernel")
        back = b.op("Conv", [flat, kernel_const], pads=back_pads, group=group, kernel_shape=kernel)
        return {node.input[0]: Grad(ctx.unflat(back, x_dims))}
    options: dict[str, Any] = {
        "strides": strides, "pads": pads, "dilations": dilations, "group": group,
        "kernel_shape": kernel,
    }  # fmt: skip
    if any(output_padding):
        options["output_padding"] = output_padding
    back = b.op("ConvTranspose", [flat, node.input[1]], **options)
    return {node.input[0]: Grad(ctx.unflat(back, x_dims))}


@rule("Concat")
def _concat(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    axis = int(attrs(node)["axis"])
    rank = len(ctx.dims(node.output[0])) + 1
    axis = axis % rank
    if axis == 0:
        raise RuleError(f"node {node.name!r}: a Concat along the batch axis is not supported")
    normal = ctx.normal(g)
    out: dict[str, Grad] = {}
    start = 0
    for p, name in enumerate(node.input):
        size = ctx.dims(name)[axis - 1]
        if p in carried:
            part = ctx.b.slice(normal, [start], [start + size], [axis + 1])
            grad = Grad(part)
            out[name] = Grad(ctx.b.op("Add", [out[name].name, part])) if name in out else grad
        start += size
    return out


@rule("Pad")
def _pad(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> dict[str, Grad]:
    """Constant padding (Keras' ZeroPadding2D): the input's gradient is the padded gradient's middle."""
    mode = attrs(node).get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = ctx.value(node.input[1]) if len(node.input) > 1 else None
    if (
        mode != "constant"
        or pads is None
        or carried != (0,)
        or (len(node.input) > 3 and node.input[3])
        or (pads < 0).any()
    ):
        raise RuleError(f"node {node.name!r} (Pad): only constant padding of all axes by constant amounts")
    x_dims = ctx.dims(node.input[0])
    rank = len(x_dims) + 1
    begins = [int(p) for p in pads[:rank]]
    if begins[0] != 0 or int(pads[rank]) != 0:
        raise RuleError(f"node {node.name!r} (Pad): padding the batch axis is not supported")
    axes = [a + 1 for a in range(1, rank)]  # after N and K
    starts = begins[1:]
    ends = [b + d for b, d in zip(starts, x_dims, strict=True)]
    return {node.input[0]: Grad(ctx.b.slice(ctx.normal(g), starts, ends, axes))}
