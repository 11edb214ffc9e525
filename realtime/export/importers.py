"""Importers: any ONNX classifier, or a Keras CNN through tf2onnx (forward pass only).

Both give a ForwardGraph: an ONNX graph from the model's float input to its
logits, with the layout of that input. The backward is added later, the same
way for both. Only `keras_forward` imports TensorFlow, and only when called.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from realtime.export.builder import MIN_OPSET, model_opset
from realtime.export.head import NCHW, NHWC

OPSET = 17


class ModelImportError(ValueError):
    """The model cannot be read as an image classifier; the message says what to pass."""


@dataclass(frozen=True)
class ForwardGraph:
    """A classifier's forward pass as ONNX, ready for the backward builder."""

    model: onnx.ModelProto
    input_name: str
    layout: str  # NCHW | NHWC: the model input's layout
    name: str
    layer: str | None = None  # the tensor a Keras layer name resolved to
    layer_layout: str | None = None  # its layout, when the framework says (Keras: NHWC)
    more_layers: tuple[str, ...] = ()  # further Keras layers, exposed as tensors of the same names


def _image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(v.name for v in inputs)
        raise ModelImportError(f"the model has {len(inputs)} inputs ({names}); an image classifier has one")
    value = inputs[0]
    if len(value.type.tensor_type.shape.dim) != 4 or value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelImportError(f"input {value.name!r} is not a float 4-D image tensor")
    return value


def _layout(dims: list[int | None], given: str | None) -> str:
    if given:
        return given
    if dims[1] == 3 and dims[3] != 3:
        return NCHW
    if dims[3] == 3 and dims[1] != 3:
        return NHWC
    raise ModelImportError(f"cannot tell the input layout from its shape {dims}; pass --layout NCHW or NHWC")


def load_onnx(
    path: Path, layout: str | None = None, input_size: tuple[int, int] | None = None, name: str | None = None
) -> ForwardGraph:
    """Read an ONNX classifier; batch becomes dynamic, spatial size is fixed (given or read from the model)."""
    if not path.exists():
        raise ModelImportError(f"--onnx {path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ModelImportError(f"--onnx {path}: not an ONNX model ({type(exc).__name__}: {exc})") from exc
    if model_opset(model) < MIN_OPSET:
        from onnx import version_converter

        model = version_converter.convert_version(model, OPSET)
    value = _image_input(model)
    shape = value.type.tensor_type.shape
    dims = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
    chosen = _layout(dims, layout)
    spatial = (2, 3) if chosen == NCHW else (1, 2)
    if input_size is not None:
        dims[spatial[0]], dims[spatial[1]] = input_size
    if any(dims[a] is None or dims[a] == 0 for a in spatial):
        raise ModelImportError(f"input {value.name!r} has a dynamic spatial size {dims}; pass --input-size HxW")
    shape.dim[0].Clear()
    shape.dim[0].dim_param = "N"
    for axis in spatial:
        shape.dim[axis].Clear()
        shape.dim[axis].dim_value = int(dims[axis])  # type: ignore[arg-type]
    for out in model.graph.output:
        if out.type.tensor_type.shape.dim:
            out.type.tensor_type.shape.dim[0].Clear()
            out.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    initializers = {init.name for init in model.graph.initializer}
    keep = [v for v in model.graph.input if v.name not in initializers]  # old exporters list weights as inputs
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return ForwardGraph(model, value.name, chosen, name or path.stem)


def keras_forward(model: Any, layers: str | Sequence[str], name: str) -> ForwardGraph:
    """tf2onnx of the forward pass with the weights as inputs (nothing big is frozen), then bound.

    Every named layer's output stays a tensor of the layer's name, for the backward to reach.
    """
    wanted = [layers] if isinstance(layers, str) else list(layers)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    import tf2onnx

    from realtime.export.passes import fold_initializer_ops, fold_initializer_transposes

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
    return ForwardGraph(
        proto, input_name, NHWC, name, layer=wanted[0], layer_layout=NHWC, more_layers=tuple(wanted[1:])
    )


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
