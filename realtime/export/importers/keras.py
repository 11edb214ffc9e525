"""A Keras CNN in: VGG16 with the weights asked for, or the user's own model, through tf2onnx.

The forward pass is converted with the weights as inputs (nothing big is frozen), then bound as
initializers; every named layer's output stays a tensor of the layer's name for the backward.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from realtime.export.config import ExportConfig, ExportError
from realtime.export.graph.layout import NHWC
from realtime.export.importers import OPSET, ForwardGraph, ModelImportError
from realtime.quiet import quiet_stderr


def import_tensorflow(verbose: bool = False) -> None:
    """TensorFlow imported once, without its "Could not find cuda drivers" lines on a CPU machine
    (printed before TF_CPP_MIN_LOG_LEVEL applies, so only a silenced stderr keeps them out)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr(enabled=not verbose):
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        import tf2onnx  # noqa: F401


def load_keras_model(config: ExportConfig) -> Any:
    """VGG16 with the requested weights, or the user's own saved model."""
    import_tensorflow(config.verbose)
    import keras

    if config.model is not None:
        if not config.model.exists():
            raise ExportError(f"--model {config.model}: no such file")
        return keras.models.load_model(config.model, compile=False)
    if config.weights == "random":
        keras.utils.set_random_seed(config.seed)
        return keras.applications.VGG16(weights=None, classifier_activation=None)
    if config.weights == "imagenet":
        try:
            return keras.applications.VGG16(weights="imagenet", classifier_activation=None)
        except Exception as exc:
            raise ExportError(
                f"could not get the ImageNet weights ({type(exc).__name__}: {exc}). Offline? Download "
                "vgg16_weights_tf_dim_ordering_tf_kernels.h5 on a connected machine and pass "
                "--weights PATH, or use --weights random for a smoke test"
            ) from exc
    path = Path(config.weights)
    if not path.exists():
        raise ExportError(f"--weights {config.weights}: no such file (use imagenet, random or a .h5/.keras path)")
    if path.suffix == ".keras":
        return keras.models.load_model(path, compile=False)
    if path.suffix != ".h5":
        raise ExportError(f"--weights {path}: expected a .h5, .weights.h5 or .keras file")
    model = keras.applications.VGG16(weights=None, classifier_activation=None)
    try:
        model.load_weights(path)
    except Exception as exc:
        raise ExportError(f"--weights {path}: not VGG16 weights ({exc})") from exc
    return model


def release_tensorflow() -> None:
    """Drop Keras' global state and collect, so the rest does not stack on the TF model's memory."""
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


def keras_forward(model: Any, layers: str | Sequence[str], name: str) -> ForwardGraph:
    """tf2onnx of the forward pass with the weights as inputs (nothing big is frozen), then bound.

    Every named layer's output stays a tensor of the layer's name, for the backward to reach.
    """
    wanted = [layers] if isinstance(layers, str) else list(layers)
    import_tensorflow()
    import keras
    import tensorflow as tf
    import tf2onnx

    from realtime.export.importers.passes.normalize import fold_initializer_ops, fold_initializer_transposes

    names = [layer_.name for layer_ in model.layers]
    for layer in wanted:
        if layer not in names:
            raise ModelImportError(f"model has no layer {layer!r}; its layers are: {', '.join(names)}")
    twin = keras.Model(model.inputs, [model.output, *(model.get_layer(layer).output for layer in wanted)])
    trainable = [np.asarray(v.numpy()) for v in twin.trainable_variables]
    frozen = [np.asarray(v.numpy()) for v in twin.non_trainable_variables]
    height, width = (int(d) for d in model.input_shape[1:3])

    def forward(x: tf.Tensor, *ws: tf.Tensor) -> tuple[tf.Tensor, ...]:
        outputs, _ = twin.stateless_call(list(ws[: len(trainable)]), list(ws[len(trainable) :]), x, training=False)
        return tuple(outputs)

    arrays = trainable + frozen
    weight_names = tuple(f"gradcam_w{i}" for i in range(len(arrays)))
    signature = (
        tf.TensorSpec([None, height, width, 3], tf.float32, name="input"),
        *(tf.TensorSpec(a.shape, tf.as_dtype(a.dtype), name=n) for a, n in zip(arrays, weight_names, strict=True)),
    )
    fn = tf.function(forward, input_signature=signature, autograph=False)
    # tensors a layer holds outside its variables (EfficientNet's Normalization) become captured inputs
    captured = [(i.name, np.asarray(e.numpy())) for e, i in fn.get_concrete_function(*signature).graph.captures]
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=list(signature), opset=OPSET)
    _name_outputs(proto, ("keras_logits", *wanted))
    _bind_weights(proto, weight_names + tuple(n for n, _ in captured), tuple(arrays) + tuple(v for _, v in captured))
    while fold_initializer_transposes(proto) + fold_initializer_ops(
        proto
    ):  # a depthwise kernel: reshape, then transpose
        pass
    input_name = next(v.name for v in proto.graph.input)
    return ForwardGraph(proto, input_name, NHWC, name, layers=tuple(wanted), layer_layout=NHWC)


def _name_outputs(model: onnx.ModelProto, names: tuple[str, ...]) -> None:
    """Give tf2onnx's outputs our names, in the order the function returns them."""
    graph = model.graph
    for value, new in zip(list(graph.output), names, strict=True):
        old = value.name
        for node in graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
        value.name = new


def _bind_weights(model: onnx.ModelProto, names: tuple[str, ...], arrays: tuple[np.ndarray, ...]) -> None:
    """Turn the weight inputs of the converted function into initializers holding `arrays`."""
    from onnx import numpy_helper

    graph = model.graph
    wanted = dict(zip(names, arrays, strict=True))
    missing = set(wanted) - {value.name for value in graph.input}
    if missing:
        raise RuntimeError(f"converted graph lost weight inputs {sorted(missing)}")
    keep = [value for value in graph.input if value.name not in wanted]
    del graph.input[:]
    graph.input.extend(keep)
    for name, array in wanted.items():
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
