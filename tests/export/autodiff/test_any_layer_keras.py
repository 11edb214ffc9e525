"""Any layer and the input of Keras models, against GradientTape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from realtime.export.checks.keras_reference import PREPROCESSORS
from realtime.export.pipeline import ExportConfig, export_model
from tests.helpers.graph_values import graph_values
from tests.helpers.optional import needs

keras = needs("keras")


tf = needs("tensorflow")


TOLERANCE = 1e-4


# builder, two layers, preprocessing. Keras ResNet50 left this list for the suite's time (33 s): its residual
# Adds, convolutions and folded batch norms are here in MobileNetV2, its head in test_export.py, and
# torchvision's ResNet50 at two layers and the input in test_layers.py
CASES = {
    "vgg16": (lambda: keras.applications.VGG16(weights=None, classifier_activation=None),
              ("block4_conv3", "block3_conv3"), "caffe"),
    "mobilenetv2": (lambda: keras.applications.MobileNetV2(weights=None, classifier_activation=None),
                    ("block_13_expand_relu", "block_6_expand_relu"), "tf"),
}  # fmt: skip


class GraphValues:
    """The graph's own values of its forward ReLUs, ReLU6s (Clip) and max-pool inputs, looked up by value."""

    def __init__(self, graph: Path, image: np.ndarray, targets: np.ndarray) -> None:
        kinds = {"Relu": "relu", "Clip": "relu6", "MaxPool": "pool"}

        def tensor(node: onnx.NodeProto) -> str | None:
            if node.op_type not in kinds:
                return None
            return node.input[0] if node.op_type == "MaxPool" else node.output[0]

        self.outputs, values = graph_values(graph, image, targets, tensor)  # the contract outputs, same run
        # tf2onnx computes convolutions NCHW inside, Keras tensors are NHWC: keep both views
        self.values = [
            (kinds[op], view) for op, v in values for view in ((v, v.transpose(0, 2, 3, 1)) if v.ndim == 4 else (v,))
        ]

    def find(self, kind: str, reference: np.ndarray) -> np.ndarray:
        """The graph tensor of this kind closest to `reference` (TF's value of the same unit)."""
        scale = np.abs(reference).max() or 1.0
        best = min(
            (v for k, v in self.values if k == kind and v.shape == reference.shape),
            key=lambda v: np.abs(v - reference).max(),
        )
        assert np.abs(best - reference).max() <= 1e-3 * scale, f"no {kind} tensor of the graph matches"
        return best


def _first_maximum_indices(x: np.ndarray, pool: Any) -> np.ndarray:
    """For each pooled position of NHWC `x`, the flat index (N*H*W*C) of its window's first maximum."""
    k, s = pool.pool_size, pool.strides
    _, h, w, c = x.shape
    windows = np.lib.stride_tricks.sliding_window_view(x, k, axis=(1, 2))[:, :: s[0], :: s[1]]  # [N,ho,wo,C,kh,kw]
    first = windows.reshape(*windows.shape[:4], -1).argmax(axis=-1)  # numpy's argmax: the first maximum
    ni, yi, xi, ci = np.indices(first.shape)
    rows, cols = yi * s[0] + first // k[1], xi * s[1] + first % k[1]
    return ((ni * h + rows) * w + cols) * c + ci


def _forced(model: Any, graph: GraphValues) -> Any:
    """A twin of `model` whose activations and pools take the graph's decisions."""

    def relu(x: Any, **kwargs: Any) -> Any:
        reference = np.maximum(x.numpy(), 0.0) if "max_value" not in kwargs else np.clip(x.numpy(), 0.0, 6.0)
        kind = "relu6" if kwargs.get("max_value") == 6.0 else "relu"
        decided = graph.find(kind, reference)
        if kind == "relu":
            return x * tf.constant((decided > 0).astype(np.float32))
        inside = tf.constant(((decided > 0) & (decided < 6)).astype(np.float32))
        return x * inside + tf.constant(np.where(decided >= 6, 6.0, 0.0).astype(np.float32)) * (1 - inside)

    for layer in model.layers:
        if isinstance(layer, keras.layers.MaxPooling2D):

            def pool(x: Any, layer: Any = layer) -> Any:
                values = graph.find("pool", x.numpy())
                flat = _first_maximum_indices(values, layer)
                return tf.reshape(tf.gather(tf.reshape(x, [-1]), flat.reshape(-1)), flat.shape)

            layer.call = pool
        elif isinstance(layer, keras.layers.ReLU):
            layer.call = lambda x, layer=layer: relu(x, max_value=layer.max_value)
        elif getattr(layer, "activation", None) is keras.activations.relu:
            layer.activation = relu
    return model


@pytest.mark.parametrize("name", list(CASES))
def test_keras_layers_and_input_match_gradient_tape(name: str, tmp_path: Path) -> None:
    build, layers, prep = CASES[name]
    keras.utils.set_random_seed(0)
    model = build()
    config = ExportConfig(
        layer=layers[0], more_layers=layers[1:], input_gradients="saliency", preprocessing=prep,
        output=tmp_path / f"{name}.onnx", quiet=True, self_check=False,
    )  # fmt: skip
    graph = export_model(model, config).output
    image = np.random.default_rng(2).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    targets = np.array([[-1, 7], [3, -1]], np.int64)
    values = GraphValues(graph, image, targets)
    got = values.outputs
    twin = keras.Model(model.inputs, [model.get_layer(layer).output for layer in layers] + [model.output])
    forced = _forced(twin, values)
    x = PREPROCESSORS[prep](tf.cast(tf.constant(image), tf.float32))
    with tf.GradientTape(persistent=True) as tape:  # one forward of the forced twin serves every score
        tape.watch(x)
        *maps, logits = forced(x, training=False)
        scores = {(n, k): logits[n, int(got["classes"][n, k])] for n in range(2) for k in range(2)}
    for n in range(2):
        for k in range(2):
            grads = tape.gradient(scores[n, k], [*maps, x])
            for output, grad in zip(("gradients", "gradients_1", "saliency"), grads, strict=True):
                want = grad.numpy()[n]
                error = np.abs(got[output][n, k] - want).max() / np.abs(want).max()
                assert error <= TOLERANCE, f"{name} {output} image {n} target {k}: {error:.2e} relative"
