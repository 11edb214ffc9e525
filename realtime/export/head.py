"""The classifier head after the Grad-CAM layer, and its analytic backward.

tf2onnx cannot convert GradientTape gradients (ReluGrad, MaxPoolGrad have no
ONNX mapping), so the derivative of a logit with respect to the feature map is
written here with forward ops only: MatMul, Gather, Mul, ArgMax, OneHot,
Reshape, Transpose. The head is a plain chain, which keeps this exact.

Max-pool routing uses a one-hot of the first maximum (row-major) in each
window. That is what TF's MaxPoolGrad does, and it sends each window's
gradient to exactly one position even when the window is all zeros. An
equality mask would count ties several times and change the channel weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

SUPPORTED_LAYERS = (
    "MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, "
    "Flatten, Dense (relu/linear/softmax), Dropout, Activation/ReLU"
)


class UnsupportedHeadError(ValueError):
    """The layers after the Grad-CAM layer are not a chain we can differentiate analytically."""


@dataclass(frozen=True)
class HeadOp:
    """One layer of the head, reduced to what the forward and backward need."""

    kind: str  # maxpool, avgpool, gap, gmp, flatten, dense, relu, identity
    name: str
    pool: tuple[int, int] = (1, 1)
    relu: bool = False
    in_shape: tuple[int, ...] = ()  # static shape without the batch axis
    weights: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Head:
    """The head as a list of ops, with the facts the pooled backward relies on."""

    ops: tuple[HeadOp, ...]
    map_shape: tuple[int, int, int]  # (h, w, k) of the Grad-CAM layer
    num_classes: int

    @property
    def weight_arrays(self) -> list[np.ndarray]:
        return [w for op in self.ops for w in op.weights]


def _pool_size(layer: Any) -> tuple[int, int]:
    pool = tuple(int(p) for p in layer.pool_size)
    strides = tuple(int(s) for s in (layer.strides or pool))
    if pool != strides:
        raise UnsupportedHeadError(
            f"layer {layer.name!r}: pool {pool} with strides {strides}; only non-overlapping pools "
            "(strides equal to the pool size) have an exact one-hot backward here"
        )
    return pool  # type: ignore[return-value]


def _activation_name(layer: Any) -> str:
    act = getattr(layer, "activation", None)
    return str(getattr(act, "__name__", act))


def parse_head(model: Any, layer_name: str) -> Head:
    """Read the layers after `layer_name` into HeadOps, or say which one we cannot handle."""
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise UnsupportedHeadError(f"model has no layer {layer_name!r}; its layers are: {', '.join(names)}")
    start = names.index(layer_name)
    feature = model.layers[start].output
    if len(feature.shape) != 4 or any(d is None for d in feature.shape[1:]):
        raise UnsupportedHeadError(
            f"layer {layer_name!r} outputs {tuple(feature.shape)}; Grad-CAM needs a static [N,h,w,k] map"
        )
    map_shape = tuple(int(d) for d in feature.shape[1:])
    ops: list[HeadOp] = []
    previous = feature
    tail = model.layers[start + 1 :]
    if not tail:
        raise UnsupportedHeadError(f"layer {layer_name!r} is the model's last layer; nothing to explain")
    for i, layer in enumerate(tail):
        if layer.input is not previous:
            raise UnsupportedHeadError(
                f"layer {layer.name!r} does not take the previous layer's output: the head after "
                f"{layer_name!r} must be a plain chain of {SUPPORTED_LAYERS}"
            )
        previous = layer.output
        last = i == len(tail) - 1
        kind = type(layer).__name__
        in_shape = tuple(int(d) for d in layer.input.shape[1:])
        if kind == "MaxPooling2D":
            ops.append(HeadOp("maxpool", layer.name, pool=_pool_size(layer), in_shape=in_shape))
        elif kind == "AveragePooling2D":
            ops.append(HeadOp("avgpool", layer.name, pool=_pool_size(layer), in_shape=in_shape))
        elif kind == "GlobalAveragePooling2D":
            ops.append(HeadOp("gap", layer.name, in_shape=in_shape))
        elif kind == "GlobalMaxPooling2D":
            ops.append(HeadOp("gmp", layer.name, in_shape=in_shape))
        elif kind == "Flatten":
            ops.append(HeadOp("flatten", layer.name, in_shape=in_shape))
        elif kind == "Dropout":
            ops.append(HeadOp("identity", layer.name, in_shape=in_shape))
        elif kind in ("Activation", "ReLU"):
            act = "relu" if kind == "ReLU" else _activation_name(layer)
            if act == "relu":
                ops.append(HeadOp("relu", layer.name, in_shape=in_shape))
            elif act == "linear" or (act == "softmax" and last):
                ops.append(HeadOp("identity", layer.name, in_shape=in_shape))
            else:
                raise UnsupportedHeadError(f"layer {layer.name!r}: activation {act!r} is not supported")
        elif kind == "Dense":
            if len(in_shape) != 1:
                raise UnsupportedHeadError(
                    f"layer {layer.name!r}: Dense on a {len(in_shape) + 1}-D input; flatten or pool first"
                )
            act = _activation_name(layer)
            if act not in ("relu", "linear") and not (act == "softmax" and last):
                raise UnsupportedHeadError(f"layer {layer.name!r}: Dense activation {act!r} is not supported")
            kernel = np.asarray(layer.kernel.numpy(), dtype=np.float32)
            bias = (
                np.asarray(layer.bias.numpy(), dtype=np.float32)
                if layer.use_bias
                else np.zeros(kernel.shape[1], np.float32)
            )
            ops.append(HeadOp("dense", layer.name, relu=act == "relu", in_shape=in_shape, weights=(kernel, bias)))
        else:
            raise UnsupportedHeadError(
                f"layer {layer.name!r} ({kind}) is not supported after the Grad-CAM layer; "
                f"supported: {SUPPORTED_LAYERS}"
            )
    out_shape = tuple(previous.shape[1:])
    if len(out_shape) != 1:
        raise UnsupportedHeadError(f"the model ends in shape {out_shape}; a classifier must end in [N, classes]")
    return Head(ops=tuple(ops), map_shape=map_shape, num_classes=int(out_shape[0]))  # type: ignore[arg-type]


def pooled_dense_kernel(kernel: np.ndarray, spatial_shape: tuple[int, int, int]) -> np.ndarray:
    """Sum a post-flatten Dense kernel over space: [h*w*k, u] -> [k, u].

    The spatial sum of dlogit/dA then needs this 49x smaller matrix instead of
    a second read of the whole kernel (exact given one-hot pool routing, which
    moves each gradient value without splitting or duplicating it).
    """
    h, w, k = spatial_shape
    return kernel.reshape(h, w, k, -1).sum(axis=(0, 1), dtype=np.float64).astype(np.float32)


def first_flatten_dense(head: Head) -> int | None:
    """Index of the Dense that reads a flattened spatial map, if the head has one."""
    seen_flatten = False
    for i, op in enumerate(head.ops):
        if op.kind in ("gap", "gmp"):
            return None
        if op.kind == "flatten" and len(op.in_shape) == 3:
            seen_flatten = True
        if op.kind == "dense":
            return i if seen_flatten else None
    return None


# --------------------------------------------------------------------------- forward


def head_forward(head: Head, x: tf.Tensor, weights: Sequence[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Logits from the Grad-CAM layer, and each op's input for the backward."""
    saved: list[tf.Tensor] = []
    it = iter(weights)
    for op in head.ops:
        saved.append(x)
        if op.kind == "maxpool":
            x = tf.nn.max_pool2d(x, op.pool, op.pool, "VALID")
        elif op.kind == "avgpool":
            x = tf.nn.avg_pool2d(x, op.pool, op.pool, "VALID")
        elif op.kind == "gap":
            x = tf.reduce_mean(x, axis=[1, 2])
        elif op.kind == "gmp":
            x = tf.reduce_max(x, axis=[1, 2])
        elif op.kind == "flatten":
            x = tf.reshape(x, [-1, int(np.prod(op.in_shape))])
        elif op.kind == "relu":
            x = tf.nn.relu(x)
        elif op.kind == "dense":
            kernel, bias = next(it), next(it)
            z = tf.matmul(x, kernel) + bias
            saved[-1] = z  # the backward needs the pre-activation, not the input
            x = tf.nn.relu(z) if op.relu else z
    return x, saved


# --------------------------------------------------------------------------- backward


def _back_matmul(kernel: tf.Tensor, g: tf.Tensor, n: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """g @ kernel^T for g [N,K,u] and kernel [i,u], as MatMul(kernel, g^T).

    Written with the kernel on the left so no transposed copy of a large
    weight is ever made: only the small gradient is transposed.
    """
    units = g.shape[-1]
    flat = tf.reshape(g, [-1, units])
    out = tf.matmul(kernel, flat, transpose_b=True)  # [i, N*K]
    return tf.reshape(tf.transpose(out), [n, k, kernel.shape[0]])


def _mask(pre_activation: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    return tf.expand_dims(tf.cast(pre_activation > 0, dtype), 1)


def _maxpool_backward(x: tf.Tensor, g: tf.Tensor, pool: tuple[int, int], n: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """Route each pooled gradient to the window's first maximum (row-major)."""
    height, width, ch = (int(d) for d in x.shape[1:])
    ph, pw = pool
    ho, wo = height // ph, width // pw
    win = tf.reshape(x[:, : ho * ph, : wo * pw, :], [-1, ho, ph, wo, pw, ch])
    win = tf.reshape(tf.transpose(win, [0, 1, 3, 5, 2, 4]), [-1, ho, wo, ch, ph * pw])
    first = tf.argmax(win, axis=-1, output_type=tf.int32)
    onehot = tf.one_hot(first, ph * pw, dtype=g.dtype)  # [N, ho, wo, ch, P]
    routed = tf.expand_dims(onehot, 1) * tf.expand_dims(g, -1)  # [N, K, ho, wo, ch, P]
    routed = tf.reshape(routed, [n, k, ho, wo, ch, ph, pw])
    routed = tf.reshape(tf.transpose(routed, [0, 1, 2, 5, 3, 6, 4]), [n, k, ho * ph, wo * pw, ch])
    return _pad_to(routed, height, width)


def _avgpool_backward(x: tf.Tensor, g: tf.Tensor, pool: tuple[int, int], n: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    height, width, ch = (int(d) for d in x.shape[1:])
    ph, pw = pool
    ho, wo = height // ph, width // pw
    spread = tf.reshape(g, [n, k, ho, 1, wo, 1, ch]) * tf.ones([1, 1, 1, ph, 1, pw, 1], g.dtype) / float(ph * pw)
    return _pad_to(tf.reshape(spread, [n, k, ho * ph, wo * pw, ch]), height, width)


def _pad_to(g: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Zero gradient for rows/cols that a VALID pool never read."""
    dh, dw = height - int(g.shape[2]), width - int(g.shape[3])
    if dh == 0 and dw == 0:
        return g
    return tf.pad(g, [[0, 0], [0, 0], [0, dh], [0, dw], [0, 0]])


def _gmp_backward(x: tf.Tensor, g: tf.Tensor, n: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    height, width, ch = (int(d) for d in x.shape[1:])
    first = tf.argmax(tf.reshape(x, [-1, height * width, ch]), axis=1, output_type=tf.int32)  # [N, ch]
    onehot = tf.one_hot(first, height * width, axis=1, dtype=g.dtype)  # [N, hw, ch]
    routed = tf.expand_dims(onehot, 1) * tf.expand_dims(g, 2)  # [N, K, hw, ch]
    return tf.reshape(routed, [n, k, height, width, ch])


def head_backward(
    head: Head,
    saved: Sequence[tf.Tensor],
    weights: Sequence[tf.Tensor],
    classes: tf.Tensor,
    pooled: bool = False,
    pooled_kernel: tf.Tensor | None = None,
) -> tf.Tensor:
    """d logit[classes] / d A for each target: [N,K,h,w,k].

    With `pooled`, returns the spatial sum of that gradient, [N,K,k], without
    touching the full post-flatten kernel a second time: heads with a Dense
    after Flatten then need `pooled_kernel` (see pooled_dense_kernel).
    """
    pairs = [(weights[2 * i], weights[2 * i + 1]) for i in range(len(weights) // 2)]
    dense_index = len(pairs)
    pooled_at = first_flatten_dense(head) if pooled else None
    if pooled_at is not None and pooled_kernel is None:
        raise ValueError("pooled backward of a flatten-dense head needs pooled_kernel")
    n, k = tf.shape(classes)[0], tf.shape(classes)[1]  # shapes from one source keep tf2onnx's reshapes exact
    g: tf.Tensor | None = None  # None: the one-hot seed at the logits, not built yet
    for i in range(len(head.ops) - 1, -1, -1):
        op, x = head.ops[i], saved[i]
        if op.kind == "dense":
            dense_index -= 1
            kernel, _ = pairs[dense_index]
            if g is None and not op.relu:
                # one-hot @ kernel^T is just the kernel's columns for the classes
                source = pooled_kernel if i == pooled_at else kernel
                g = tf.transpose(tf.gather(source, classes, axis=1), [1, 2, 0])
                if i == pooled_at:
                    return g
                continue
            if g is None:
                g = tf.one_hot(classes, int(kernel.shape[1]), dtype=x.dtype)
            if op.relu:
                g = g * _mask(x, g.dtype)
            if i == pooled_at:
                assert pooled_kernel is not None
                return _back_matmul(pooled_kernel, g, n, k)
            g = _back_matmul(kernel, g, n, k)
            continue
        if g is None:
            g = tf.one_hot(classes, int(x.shape[-1]), dtype=x.dtype)
        if op.kind == "relu":
            g = g * _mask(x, g.dtype)
        elif op.kind == "flatten":
            g = tf.reshape(g, [n, k, *op.in_shape])
        elif op.kind in ("gap", "gmp"):
            g = tf.reshape(g, [n, k, op.in_shape[-1]])
            if pooled:
                return g  # the spatial sum of a global pool's backward is g itself
            if op.kind == "gmp":
                g = _gmp_backward(x, g, n, k)
                continue
            height, width, _ = op.in_shape
            g = tf.expand_dims(tf.expand_dims(g, 2), 2) * tf.ones([1, 1, height, width, 1], g.dtype)
            g = g / float(height * width)
        elif op.kind == "maxpool":
            g = _maxpool_backward(x, g, op.pool, n, k)
        elif op.kind == "avgpool":
            g = _avgpool_backward(x, g, op.pool, n, k)
    if g is None:
        raise UnsupportedHeadError("empty head")
    if pooled:
        return tf.reduce_sum(g, axis=[2, 3])
    return g
