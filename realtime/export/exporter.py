"""Any classifier -> checked Grad-CAM ONNX file: import, find the head, build the backward, check, write.

`export(config)` is the one entry point; `export_model` takes an in-memory
Keras model (tests, training scripts). Importing and the backward are kept
apart: both importers hand over an ONNX forward graph, and from there every
model goes the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realtime import contract
from realtime.export.quantize import DEFAULT_SCOPE, SCOPES
from realtime.files import OutputPathError, check_output_file
from realtime.labels import imagenet_labels
from realtime.progress import Progress

VGG16_LAYER = "block5_conv3"
DEFAULT_MODELS_DIR = Path("models")
LAYOUTS = ("NCHW", "NHWC")


class ExportError(RuntimeError):
    """The export cannot go on; the message says what to do instead."""


@dataclass(frozen=True)
class ExportConfig:
    weights: str = "imagenet"  # imagenet | random | PATH (.h5, .weights.h5, .keras)
    seed: int = 0
    gradients: str = contract.GRADIENTS_FULL
    output: Path | None = None
    model: Path | None = None  # another Keras CNN (.keras); None means VGG16
    onnx: Path | None = None  # any ONNX image classifier instead of a Keras model
    layer: str | None = None
    labels: Path | None = None
    preprocessing: str | None = None  # a preset; None: caffe for Keras VGG16, torch for ONNX
    mean: tuple[float, float, float] | None = None  # 0-255 scale, the model's channel order
    std: tuple[float, float, float] | None = None
    channels: str = "rgb"  # with mean/std: the channel order the model reads
    layout: str | None = None  # NCHW | NHWC of an ONNX model's input; None: read from its shape
    input_size: tuple[int, int] | None = None  # for ONNX inputs with dynamic height and width
    self_check: bool = True
    quiet: bool = False
    int8: bool = False
    calibration: str = "demo"  # demo | random | DIR
    int8_scope: str = DEFAULT_SCOPE
    calibration_count: int = 32


@dataclass(frozen=True)
class ExportResult:
    output: Path
    seconds: float
    check: Any  # selfcheck.SelfCheck | None
    num_classes: int
    layer: str
    fidelity: Any = None  # quantize.Fidelity for --int8 with real calibration data


def model_name(config: ExportConfig) -> str:
    source = config.onnx or config.model
    return source.stem if source else "vgg16"


def default_output(config: ExportConfig) -> Path:
    suffix = "_int8" if config.int8 else ""
    return DEFAULT_MODELS_DIR / f"{model_name(config)}_gradcam_{config.gradients}{suffix}.onnx"


def load_keras_model(config: ExportConfig) -> Any:
    """VGG16 with the requested weights, or the user's own saved model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
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


def resolve_labels(config: ExportConfig, num_classes: int) -> list[str]:
    if config.labels is not None:
        lines = [line.strip() for line in config.labels.read_text().splitlines() if line.strip()]
        if len(lines) != num_classes:
            raise ExportError(f"--labels {config.labels} has {len(lines)} names, the model has {num_classes} classes")
        return lines
    if num_classes == 1000:
        return list(imagenet_labels())
    return [f"class_{i}" for i in range(num_classes)]


def self_check_inputs(num_classes: int, size: tuple[int, int], seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """A random batch that exercises both given and ranked targets."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(2, *size, 3), dtype=np.uint8)
    targets = np.array([[-1, min(1, num_classes - 1)], [num_classes - 1, -1]], dtype=np.int64)
    if num_classes == 1:  # TopK cannot rank more classes than there are
        targets = np.array([[-1], [0]], dtype=np.int64)
    return image, targets


def _validate(config: ExportConfig) -> None:
    """Everything that can be said about the config before any slow work starts."""
    if config.gradients not in (contract.GRADIENTS_FULL, contract.GRADIENTS_POOLED, contract.GRADIENTS_NONE):
        raise ExportError(f"--gradients {config.gradients!r}: choose full, pooled or none")
    if config.preprocessing is not None and config.preprocessing not in contract.PREPROCESSING_MODES:
        raise ExportError(f"--preprocess {config.preprocessing!r}: choose {', '.join(contract.PREPROCESSING_MODES)}")
    if (config.mean is None) != (config.std is None):
        raise ExportError("--mean and --std go together")
    if config.std is not None and any(s <= 0 for s in config.std):
        raise ExportError(f"--std {config.std}: every value must be positive")
    if config.onnx is not None and config.model is not None:
        raise ExportError("--onnx and --model are two different sources; give one")
    if config.model is not None and not config.layer:
        raise ExportError("--model needs --layer NAME (the conv layer to explain)")
    if config.layout is not None and config.layout not in LAYOUTS:
        raise ExportError(f"--layout {config.layout!r}: choose NCHW or NHWC")
    if config.int8 and config.int8_scope not in SCOPES:  # before the export, not after it
        raise ExportError(f"--int8-scope {config.int8_scope!r}: choose {', '.join(SCOPES)}")
    if config.labels is not None and not config.labels.is_file():
        raise ExportError(f"--labels {config.labels}: no such file")
    try:  # the same check gradcam-live makes of its outputs, in the first second
        check_output_file(config.output or default_output(config), "--output", (".onnx",))
    except OutputPathError as exc:
        raise ExportError(str(exc)) from exc


def preprocess_spec(config: ExportConfig) -> tuple[str, Any]:
    """(name for the metadata, contract_graph.Preprocess)."""
    from realtime.export.contract_graph import PRESETS, Preprocess

    if config.mean is not None and config.std is not None:
        return "custom", Preprocess(config.channels, config.mean, config.std)
    name = config.preprocessing or ("torch" if config.onnx is not None else "caffe")
    return name, PRESETS[name]


def export(config: ExportConfig) -> ExportResult:
    """Import the model the config names, then build, check and write its Grad-CAM graph."""
    from realtime.export import importers

    _validate(config)
    progress = _progress(config)
    start = time.perf_counter()
    if config.onnx is not None:
        with progress.step(f"reading {config.onnx}"):
            try:
                forward = importers.load_onnx(config.onnx, config.layout, config.input_size)
            except importers.ModelImportError as exc:
                raise ExportError(str(exc)) from exc
        return _finish(forward, config, progress, start)
    with progress.step("loading the Keras model"):
        model = load_keras_model(config)
    forward = _keras_forward(model, config, progress)
    del model
    _release_tensorflow()  # before the backward and int8: TF's copy of the weights is no longer needed
    return _finish(forward, config, progress, start)


def export_model(
    model: Any, config: ExportConfig, progress: Progress | None = None, start: float | None = None
) -> ExportResult:
    """Export an in-memory Keras model."""
    _validate(config)
    progress = progress or _progress(config, steps_before=1)
    start = time.perf_counter() if start is None else start
    return _finish(_keras_forward(model, config, progress), config, progress, start)


def _progress(config: ExportConfig, steps_before: int = 2) -> Progress:
    return Progress(steps_before + 1 + int(config.self_check) + (2 if config.int8 else 0), config.quiet)


def _keras_forward(model: Any, config: ExportConfig, progress: Progress) -> Any:
    from realtime.export import importers

    layer = config.layer or VGG16_LAYER
    with progress.step("converting the forward pass with tf2onnx"):
        try:
            return importers.keras_forward(model, layer, model_name(config))
        except importers.ModelImportError as exc:
            raise ExportError(str(exc)) from exc


def _release_tensorflow() -> None:
    """Drop Keras' global state and collect, so the rest does not stack on the TF model's memory."""
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


def _finish(forward: Any, config: ExportConfig, progress: Progress, start: float) -> ExportResult:
    """The same for every importer: head, backward, contract outputs, passes, checks, atomic write, int8."""
    from realtime.export import building

    output = config.output or default_output(config)
    if not config.int8:
        built = building.build_and_write(forward, config, output, progress)
        return ExportResult(output, time.perf_counter() - start, built.check, built.num_classes, built.layer)
    with tempfile.TemporaryDirectory(dir=output.parent if output.parent.exists() else None) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        built = building.build_and_write(forward, config, fp32, progress)
        del forward
        fidelity = quantize_checked(fp32, output, built.input_size, config, progress)
    return ExportResult(output, time.perf_counter() - start, built.check, built.num_classes, built.layer, fidelity)


def quantize_checked(fp32: Path, output: Path, size: tuple[int, int], config: ExportConfig, progress: Progress) -> Any:
    """Static int8 of the forward path, then int8 against fp32 on held-out images (not on random data)."""
    from realtime.export import quantize

    try:
        images = quantize.calibration_images(config.calibration, size, config.calibration_count * 5 // 4)
    except quantize.QuantizeError as exc:
        raise ExportError(str(exc)) from exc
    calibrate, held_out = images[: config.calibration_count], images[config.calibration_count :]
    with progress.step(f"quantizing to int8 ({config.int8_scope}) on {len(calibrate)} {config.calibration} images"):
        quantize.quantize(fp32, output, calibrate, config.int8_scope)
    if config.calibration == "random":
        return None
    with progress.step("fidelity: int8 against fp32 on held-out images"):
        if config.calibration == "demo":
            held, masks = quantize.demo_holdout(100, size)
            result = quantize.fidelity(fp32, output, held, masks)
        elif len(held_out):
            result = quantize.fidelity(fp32, output, held_out)
        else:
            return None
    if not config.quiet:
        print(f"      {quantize.describe(result)}", file=sys.stderr)
    return result
