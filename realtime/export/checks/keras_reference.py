"""Grad-CAM by TF's own GradientTape through the Keras layers: the independent reference.

Used by the tests and by the benchmark's "seed's method" row; the exporter
itself never calls it (its self-check needs no framework).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from realtime import contract

IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)


def _bgr_to_rgb(x: tf.Tensor) -> tf.Tensor:
    return tf.reverse(x, axis=[-1])


PREPROCESSORS = {
    "caffe": lambda x: x - tf.constant(IMAGENET_MEAN_BGR, tf.float32),
    "tf": lambda x: _bgr_to_rgb(x) / 127.5 - 1.0,
    "torch": lambda x: (_bgr_to_rgb(x) / 255.0 - tf.constant(TORCH_MEAN_RGB)) / tf.constant(TORCH_STD_RGB),
    "raw": _bgr_to_rgb,
    "unit": lambda x: _bgr_to_rgb(x) / 255.0,
}
assert set(PREPROCESSORS) == set(contract.PREPROCESSING_MODES)


def reference_gradcam(
    model: Any, layer_name: str, preprocessing: str, image: np.ndarray, targets: np.ndarray
) -> dict[str, np.ndarray]:
    """Grad-CAM by TF's own GradientTape through the Keras layers: the independent reference.

    A final softmax is left out so the score is the logit, as in the graph.
    """
    import keras

    names = [layer.name for layer in model.layers]
    layers = model.layers[names.index(layer_name) + 1 :]
    body = keras.Model(model.inputs, model.get_layer(layer_name).output)
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
            elif last and type(layer).__name__ == "Activation":
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
