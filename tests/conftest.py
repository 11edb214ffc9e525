import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from realtime.controls import Controls, apply_key
from realtime.outputs import Output, Shown

LABELS = ["cat", "dog", "bird", "snow leopard"]


def _small_classifier(seed: int = 0):
    """A 64x64 VGG-style net with 4 classes: the live tests' stand-in for VGG16."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dense(len(LABELS))(x)
    return keras.Model(inp, x)


@pytest.fixture(scope="session")
def small_models(tmp_path_factory) -> dict[str, Path]:
    """Exported small Grad-CAM graphs: {'full': path, 'pooled': path}."""
    pytest.importorskip("tensorflow")
    from realtime.export.pipeline import ExportConfig, export_model

    folder = tmp_path_factory.mktemp("small_models")
    labels = folder / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    model = _small_classifier()
    paths = {}
    for gradients in ("full", "pooled", "none"):
        config = ExportConfig(
            gradients=gradients,
            output=folder / f"small_{gradients}.onnx",
            layer="last_conv",
            labels=labels,
            quiet=True,
        )
        paths[gradients] = export_model(model, config).output
    return paths


def write_video(path: Path, frames: int, size: tuple[int, int] = (640, 480), fps: float = 30.0) -> Path:
    """A moving bright disc on grey: a known synthetic scene."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 90, np.uint8)
        cv2.circle(frame, (60 + 12 * i % (size[0] - 120), size[1] // 2), size[1] // 8, (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def count_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def needs(module: str):
    """Import an optional test dependency: skipped on a developer's machine without it, a failure in CI.

    .ci/run installs every extra, so a test that would silently skip there is a broken install.
    """
    import importlib
    import sys

    if module == "torch":
        # triton (pulled in by torch.onnx.export through dynamo) loads its own LLVM, which segfaults in a
        # process that has TensorFlow's; these CPU tests never compile kernels, so it stays unimportable
        sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


class Collect(Output):
    """An output that keeps what it was given (and optionally presses keys, one per frame)."""

    def __init__(self, keys: Sequence[int] = ()) -> None:
        self.shown: list[Shown] = []
        self.keys = list(keys)

    def write(self, shown: Shown) -> None:
        self.shown.append(shown)

    def steer(self, controls: Controls, provides: frozenset[str]) -> tuple[Controls, tuple[str, ...]]:
        key = self.keys.pop(0) if self.keys else -1
        controls, action = apply_key(controls, key, provides)
        return controls, (action,) if action else ()


def forward_values(graph: Path, image: np.ndarray, targets: np.ndarray, tensor_of) -> list[tuple[str, np.ndarray]]:
    """The graph's own values for its forward nodes (not the backward's `gradcam/...` ones), in graph order:
    `tensor_of(node)` names the tensor wanted from a node, or None to skip it. Returns (op type, value) pairs.
    The references of the any-layer tests take their ReLU and max-pool decisions from these."""
    return graph_values(graph, image, targets, tensor_of)[1]


def graph_values(
    graph: Path, image: np.ndarray, targets: np.ndarray, tensor_of
) -> tuple[dict[str, np.ndarray], list[tuple[str, np.ndarray]]]:
    """The graph's outputs and `forward_values`, from one session and one run (a large graph's session
    takes seconds to open)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(graph))
    picked = [(n.op_type, t) for n in model.graph.node if not n.name.startswith("gradcam") and (t := tensor_of(n))]
    outputs = [o.name for o in model.graph.output]
    names = [t for _, t in picked]
    model.graph.output.extend([onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in names])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(outputs + names, {"image": image, "targets": targets})
    forward = [(op, v) for (op, _), v in zip(picked, values[len(outputs) :], strict=True)]
    return dict(zip(outputs, values[: len(outputs)], strict=True)), forward
