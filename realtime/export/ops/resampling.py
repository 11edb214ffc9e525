"""Linear resampling of a feature map: Resize (nearest, linear, cubic; any scale) and the AveragePools the
window rule does not cover (overlapping, padded, either count_include_pad).

Each is linear in its input and separable: output = R_h · X · R_w^T per channel, with R_h [Ho, H] and
R_w [Wo, W] fixed by the shapes and attributes. So the gradient is R_h^T · G · R_w, two MatMuls with
constants. The matrices are measured, not derived: the node itself runs (onnx's reference evaluator) on
one-hot images along each axis, and the factorisation is checked on a random image before it is used, so
every mode torch and TensorFlow write (half_pixel, asymmetric, align_corners, nearest's rounding) is right
by construction, and one that is not separable is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from realtime.export.ops.context import Context, Grad, Grads, RuleError, first
from realtime.export.ops.record import OpRecord

MAX_SIDE = 1024  # rows or columns of a map measured this way (its basis runs that many one-hot images)


def separable_backward(ctx: Context, node: onnx.NodeProto, g: Grad) -> Grads:
    """G [N, K, C, Ho, Wo] -> R_h^T G R_w [N, K, C, H, W] for an NCHW node."""
    rows, columns = axis_matrices(ctx, node)
    b = ctx.b
    grad = ctx.normal(g)
    back = b.op("MatMul", [b.const(np.ascontiguousarray(rows.T)), grad])  # [N, K, C, H, Wo]
    return first(node, Grad(b.op("MatMul", [back, b.const(np.ascontiguousarray(columns))])))


def axis_matrices(ctx: Context, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
    """(R_h [Ho, H], R_w [Wo, W]) of the node, measured on one-hot images and checked on a random one."""
    dims_in, dims_out = ctx.dims(node.input[0]), ctx.dims(node.output[0])
    if len(dims_in) != 3 or len(dims_out) != 3:
        raise RuleError(f"node {node.name!r} ({node.op_type}): only 2-D maps [N, C, H, W] are supported")
    (_, height, width), (_, out_h, out_w) = dims_in, dims_out
    if max(height, width, out_h, out_w) > MAX_SIDE:
        raise RuleError(f"node {node.name!r} ({node.op_type}): a map over {MAX_SIDE} a side")
    run = _single(ctx, node, (height, width), (out_h, out_w))
    a0, b0 = height // 2, width // 2
    along_h = np.zeros((height, 1, height, width), np.float32)
    along_h[np.arange(height), 0, np.arange(height), b0] = 1.0
    along_w = np.zeros((width, 1, height, width), np.float32)
    along_w[np.arange(width), 0, a0, np.arange(width)] = 1.0
    y_h, y_w = run(along_h)[:, 0], run(along_w)[:, 0]  # [H, Ho, Wo], [W, Ho, Wo]
    corner = y_h[a0]
    i0, j0 = np.unravel_index(int(np.abs(corner).argmax()), corner.shape)
    if corner[i0, j0] == 0:
        raise RuleError(f"node {node.name!r} ({node.op_type}): its centre pixel reaches no output")
    rows = y_h[:, :, j0].T.astype(np.float64)  # [Ho, H]
    columns = (y_w[:, i0, :].T / corner[i0, j0]).astype(np.float64)  # [Wo, W]
    probe = np.random.default_rng(0).normal(size=(1, 1, height, width)).astype(np.float32)
    want = run(probe)[0, 0].astype(np.float64)
    got = rows @ probe[0, 0].astype(np.float64) @ columns.T
    if np.abs(got - want).max() > 1e-4 * max(1.0, float(np.abs(want).max())):
        raise RuleError(f"node {node.name!r} ({node.op_type}): not separable along H and W; pick a layer after it")
    return rows.astype(np.float32), columns.astype(np.float32)


def _single(
    ctx: Context, node: onnx.NodeProto, size: tuple[int, int], out: tuple[int, int]
) -> Callable[[np.ndarray], np.ndarray]:
    """The node alone on [B, 1, H, W] images, its constant inputs folded in: a function of the images."""
    constants: dict[int, np.ndarray] = {}
    for position, name in enumerate(node.input[1:], start=1):
        if name:
            value = ctx.value(name)
            if value is None:
                raise RuleError(f"node {node.name!r} ({node.op_type}): its input {position} must be constant")
            constants[position] = np.asarray(value)
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def run(images: np.ndarray) -> np.ndarray:
        from onnx.reference import ReferenceEvaluator

        inputs, initializers = ["x"], []
        for position in range(1, len(node.input)):
            if position not in constants:
                inputs.append("")
                continue
            value = constants[position]
            if node.op_type == "Resize" and position == 3 and value.size == 4:  # sizes [N, C, Ho, Wo]: one channel
                value = np.array([len(images), 1, out[0], out[1]], np.int64)
            initializers.append(numpy_helper.from_array(value, f"in{position}"))
            inputs.append(f"in{position}")
        graph = helper.make_graph(
            [helper.make_node(node.op_type, inputs, ["y"], **attributes)], "one_node",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, *size])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers,
        )  # fmt: skip
        # opset 19: Resize's and AveragePool's attributes of every earlier version, with the same defaults
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
        answers = ReferenceEvaluator(model).run(None, {"x": images})
        values = np.asarray(answers[0] if isinstance(answers, list) else answers["y"])
        if values.shape[-2:] != out:
            raise RuleError(f"node {node.name!r} ({node.op_type}): alone it gives {values.shape[-2:]}, not {out}")
        return values

    return run


def _resize(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:
    return separable_backward(ctx, node, g)


RECORDS = (
    OpRecord("Resize", _resize, layout="nchw", tensorrt=8.5, fp32_inputs=(2,),
             tensorrt_note="modes nearest and linear; half_pixel, pytorch_half_pixel, asymmetric, align_corners"),
)
