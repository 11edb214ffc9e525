"""A small seeded classifier written with onnx.helper: the runtime tests' stand-in for VGG16, no TensorFlow.

A 64x64 VGG-style net with 4 classes: Conv 3->8, ReLU, MaxPool, Conv 8->16, ReLU (the tensor
`last_conv`), MaxPool, Flatten, Dense 256 -> 16, ReLU, Dense 16 -> 4; NCHW float in, as torch writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LABELS = ["cat", "dog", "bird", "snow leopard"]
SIZE = 64


def small_classifier_onnx(path: Path, seed: int = 0) -> Path:
    """Write the classifier with He-initialised weights from `seed`; returns `path`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    weights = {
        "conv1.w": he((8, 3, 3, 3), 27), "conv1.b": np.full(8, 0.05, np.float32),
        "conv2.w": he((16, 8, 3, 3), 72), "conv2.b": np.full(16, 0.05, np.float32),
        "fc1.w": he((16 * 16 * 16, 16), 16 * 16 * 16), "fc1.b": np.zeros(16, np.float32),
        "fc2.w": he((16, len(LABELS)), 16), "fc2.b": np.zeros(len(LABELS), np.float32),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "conv1.w", "conv1.b"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.w", "conv2.b"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["last_conv"]),
        helper.make_node("MaxPool", ["last_conv"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc1.w"], ["m1"]),
        helper.make_node("Add", ["m1", "fc1.b"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h1"]),
        helper.make_node("MatMul", ["h1", "fc2.w"], ["m2"]),
        helper.make_node("Add", ["m2", "fc2.b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "small_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(LABELS)])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def export_small(folder: Path, gradients: str = "full", **options: object) -> Path:
    """The classifier through gradcam-export --onnx, at `last_conv`, with LABELS; `options` go to ExportConfig."""
    from realtime.export.pipeline import ExportConfig, export

    folder.mkdir(parents=True, exist_ok=True)
    labels = folder / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    source = folder / "small.onnx"
    if not source.exists():
        small_classifier_onnx(source)
    settings: dict[str, object] = {"layer": "last_conv", "labels": labels, "quiet": True, **options}
    settings.setdefault("output", folder / f"small_{gradients}.onnx")
    config = ExportConfig(onnx=source, gradients=gradients, **settings)  # type: ignore[arg-type]
    return export(config).output


def tiny_classifier(
    path: Path, first: Callable[[Any], Any] | None = None, ir_version: int | None = None, log_softmax: bool = False
) -> Path:
    """x -> [first] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm [-> LogSoftmax], with onnx's helper:
    32x32 in, 5 classes, for the tests of the command lines' refusals."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, source = [], "x"
    if first is not None:
        nodes, source = first(helper), "picked"
    nodes += [
        helper.make_node("Conv", [source, "w"], ["feat"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["feat"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc"], ["scores" if log_softmax else "logits"]),
    ]
    if log_softmax:
        nodes.append(helper.make_node("LogSoftmax", ["scores"], ["logits"], axis=1))
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 5)).astype(np.float32), "fc"),
             numpy_helper.from_array(np.array([0], np.int64), "first")]  # fmt: skip
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 5])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if ir_version is not None:
        model.ir_version = ir_version
    path.write_bytes(model.SerializeToString())
    return path
