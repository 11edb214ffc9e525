"""The Grad-CAM function in TF, with every weight passed in as an argument.

Converting a function whose weights are captured variables makes tf2onnx
freeze 528 MB of VGG16 into constants, which on a 24 GB machine is killed
for memory. With the weights as inputs the converted graph is small; the
arrays are bound as ONNX initializers afterwards (see convert.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from realtime import contract
from realtime.export.head import Head, first_flatten_dense, head_backward, head_forward, parse_head, pooled_dense_kernel

IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)


def _bgr_to_rgb(x: tf.Tensor) -> tf.Tensor:
    return tf.reverse(x, axis=[-1])


PREPROCESSORS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "caffe": lambda x: x - tf.constant(IMAGENET_MEAN_BGR, tf.float32),
    "tf": lambda x: _bgr_to_rgb(x) / 127.5 - 1.0,
    "torch": lambda x: (_bgr_to_rgb(x) / 255.0 - tf.constant(TORCH_MEAN_RGB)) / tf.constant(TORCH_STD_RGB),
    "raw": _bgr_to_rgb,
}
assert set(PREPROCESSORS) == set(contract.PREPROCESSING_MODES)


@dataclass(frozen=True)
class GradCamFunction:
    """A TF function plus the arrays to feed (or bind) as its weight inputs."""

    fn: Any  # tf.types.experimental.GenericFunction
    input_signature: tuple[tf.TensorSpec, ...]
    weight_names: tuple[str, ...]
    weight_arrays: tuple[np.ndarray, ...]
    output_names: tuple[str, ...]
    head: Head
    input_shape: tuple[int, int]


def _cam_from(activations: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """ReLU(sum_k w_k A_k), divided by its max; an all-zero map stays zero."""
    shape = tf.shape(activations)
    h, w, k = (int(d) for d in activations.shape[1:])
    flat = tf.reshape(activations, [shape[0], h * w, k])
    cam = tf.nn.relu(tf.matmul(flat, weights, transpose_b=True))  # [N, hw, K]
    cam = tf.reshape(tf.transpose(cam, [0, 2, 1]), [shape[0], -1, h, w])
    peak = tf.reduce_max(cam, axis=[2, 3], keepdims=True)
    return cam / tf.where(peak > 0, peak, tf.ones_like(peak))


def _resolve_targets(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """-1 in column k means the class ranked k-th by logit."""
    _, ranked = tf.math.top_k(logits, k=tf.shape(targets)[1])
    return tf.where(targets >= 0, targets, tf.cast(ranked, tf.int64))


def build_function(model: Any, layer_name: str, gradients: str, preprocessing: str) -> GradCamFunction:
    """The Grad-CAM graph of `model` at `layer_name` as a weights-as-inputs tf.function."""
    import keras

    head = parse_head(model, layer_name)
    body = keras.Model(model.inputs, model.get_layer(layer_name).output, name="gradcam_body")
    trainable = [np.asarray(v.numpy()) for v in body.trainable_variables]
    non_trainable = [np.asarray(v.numpy()) for v in body.non_trainable_variables]
    head_arrays = head.weight_arrays
    extra: list[np.ndarray] = []
    pooled_at = first_flatten_dense(head)
    if gradients == contract.GRADIENTS_POOLED and pooled_at is not None:
        flatten_shape = next(op.in_shape for op in reversed(head.ops[:pooled_at]) if op.kind == "flatten")
        kernel = head.ops[pooled_at].weights[0]
        extra.append(pooled_dense_kernel(kernel, flatten_shape))  # type: ignore[arg-type]
    arrays = trainable + non_trainable + head_arrays + extra
    n_tr, n_ntr, n_head = len(trainable), len(non_trainable), len(head_arrays)

    height, width = (int(d) for d in model.input_shape[1:3])
    preprocess = PREPROCESSORS[preprocessing]
    with_backward = gradients in (contract.GRADIENTS_FULL, contract.GRADIENTS_POOLED)
    outputs = [contract.OUT_LOGITS, contract.OUT_PROBABILITIES, contract.OUT_ACTIVATIONS]
    if with_backward:
        outputs = [
            contract.OUT_LOGITS,
            contract.OUT_PROBABILITIES,
            contract.OUT_CLASSES,
            contract.OUT_ACTIVATIONS,
            contract.OUT_WEIGHTS,
            contract.OUT_CAM,
        ]
        if gradients == contract.GRADIENTS_FULL:
            outputs.append(contract.OUT_GRADIENTS)

    def gradcam(image: tf.Tensor, targets: tf.Tensor, *ws: tf.Tensor) -> tuple[tf.Tensor, ...]:
        x = preprocess(tf.cast(image, tf.float32))
        activations, _ = body.stateless_call(list(ws[:n_tr]), list(ws[n_tr : n_tr + n_ntr]), x, training=False)
        head_ws = ws[n_tr + n_ntr : n_tr + n_ntr + n_head]
        logits, saved = head_forward(head, activations, head_ws)
        probabilities = tf.nn.softmax(logits)
        if not with_backward:
            return logits, probabilities, activations
        classes = _resolve_targets(logits, targets)
        h, w, _ = head.map_shape
        if gradients == contract.GRADIENTS_POOLED:
            pooled_kernel = ws[-1] if extra else None
            total = head_backward(head, saved, head_ws, classes, pooled=True, pooled_kernel=pooled_kernel)
            weights = total / float(h * w)
            return logits, probabilities, classes, activations, weights, _cam_from(activations, weights)
        grads = head_backward(head, saved, head_ws, classes)
        weights = tf.reduce_mean(grads, axis=[2, 3])
        return logits, probabilities, classes, activations, weights, _cam_from(activations, weights), grads

    names = tuple(f"gradcam_w{i}" for i in range(len(arrays)))
    signature = (
        tf.TensorSpec([None, height, width, 3], tf.uint8, name=contract.INPUT_IMAGE),
        tf.TensorSpec([None, None], tf.int64, name=contract.INPUT_TARGETS),
        *(tf.TensorSpec(a.shape, tf.as_dtype(a.dtype), name=n) for a, n in zip(arrays, names, strict=True)),
    )
    fn = tf.function(gradcam, input_signature=signature, autograph=False)
    # tensors a layer holds outside its variables (EfficientNet's Normalization mean and variance)
    # become captured placeholders, and graph inputs after conversion: bind them like weights
    captures = fn.get_concrete_function(*signature).graph.captures
    captured = [(internal.name, np.asarray(external.numpy())) for external, internal in captures]
    return GradCamFunction(
        fn=fn,
        input_signature=signature,
        weight_names=names + tuple(name for name, _ in captured),
        weight_arrays=tuple(arrays) + tuple(value for _, value in captured),
        output_names=tuple(outputs),
        head=head,
        input_shape=(height, width),
    )


def reference_gradcam(
    model: Any, layer_name: str, preprocessing: str, image: np.ndarray, targets: np.ndarray
) -> dict[str, np.ndarray]:
    """Grad-CAM by TF's own GradientTape through the Keras layers: the independent reference.

    A final softmax is left out so the score is the logit, as in the graph.
    """
    import keras

    head = parse_head(model, layer_name)
    body = keras.Model(model.inputs, model.get_layer(layer_name).output)
    layers = [model.get_layer(op.name) for op in head.ops]
    x = PREPROCESSORS[preprocessing](tf.cast(tf.constant(image), tf.float32))
    activations = body(x, training=False)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(activations)
        out = activations
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            if last and type(layer).__name__ == "Dense":
                out = tf.matmul(out, layer.kernel) + (layer.bias if layer.use_bias else 0.0)
                if getattr(layer.activation, "__name__", "") == "relu":
                    out = tf.nn.relu(out)
            elif last and head.ops[i].kind == "identity":
                pass  # a trailing softmax Activation
            else:
                out = layer(out, training=False)
        logits = out
        ranked = np.argsort(-logits.numpy(), axis=1, kind="stable")
        classes = np.where(targets >= 0, targets, ranked[:, : targets.shape[1]])
        scores = tf.gather(logits, tf.constant(classes), batch_dims=1)  # [N, K]
        per_target = [scores[:, k] for k in range(classes.shape[1])]
    grads = np.stack([tape.gradient(s, activations).numpy() for s in per_target], axis=1)
    del tape
    a = activations.numpy()
    weights = grads.mean(axis=(2, 3))
    cam = np.maximum(np.einsum("nhwc,nkc->nkhw", a, weights), 0)
    peak = cam.max(axis=(2, 3), keepdims=True)
    cam = cam / np.where(peak > 0, peak, 1)
    return {
        contract.OUT_LOGITS: logits.numpy(),
        contract.OUT_CLASSES: classes.astype(np.int64),
        contract.OUT_ACTIVATIONS: a,
        contract.OUT_GRADIENTS: grads,
        contract.OUT_WEIGHTS: weights,
        contract.OUT_CAM: cam,
    }
