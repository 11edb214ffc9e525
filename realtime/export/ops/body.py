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

from realtime.export.graph.index import attrs, text
from realtime.export.ops.context import Context, Grad, Grads, RuleError, first, grads_at
from realtime.export.ops.geometry import explicit_pads
from realtime.export.ops.record import OpRecord

FEW_CHANNELS = 8  # below this many input channels, the backward stays a ConvTranspose (VGG16's first conv: 3)


def _conv(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
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
    pads = explicit_pads(node, x_dims[1:], y_dims[1:], kernel)
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
        return first(node, Grad(ctx.unflat(back, x_dims)))
    options: dict[str, Any] = {
        "strides": strides, "pads": pads, "dilations": dilations, "group": group,
        "kernel_shape": kernel,
    }  # fmt: skip
    if any(output_padding):
        options["output_padding"] = output_padding
    back = b.op("ConvTranspose", [flat, node.input[1]], **options)
    return first(node, Grad(ctx.unflat(back, x_dims)))


def _concat(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    axis = int(attrs(node)["axis"])
    rank = len(ctx.dims(node.output[0])) + 1
    axis = axis % rank
    if axis == 0:
        raise RuleError(f"node {node.name!r}: a Concat along the batch axis is not supported")
    normal = ctx.normal(g)
    out: dict[int, Grad] = {}
    start = 0
    for p, name in enumerate(node.input):
        size = ctx.dims(name)[axis - 1]
        if p in carried:  # the same tensor twice gets two parts; the backward adds them
            out[p] = Grad(ctx.b.slice(normal, [start], [start + size], [axis + 1]))
        start += size
    return grads_at(node, out)


def _pad(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    """Constant padding (Keras' ZeroPadding2D): the input's gradient is the padded gradient's middle."""
    mode = text(attrs(node).get("mode"), "constant")
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
    return first(node, Grad(ctx.b.slice(ctx.normal(g), starts, ends, axes)))


RECORDS = (
    OpRecord("Conv", _conv, layout="nchw", tensorrt=8.5, int8="conv"),
    OpRecord("Concat", _concat, grad_inputs="all", tensorrt=8.5, batch_fold="joins"),
    OpRecord("Pad", _pad, tensorrt=8.5, tensorrt_note="constant pads"),
)
