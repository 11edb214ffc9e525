"""Keras model -> checked Grad-CAM ONNX file. The one entry point of the export path."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from realtime import contract
from realtime.export.quantize import DEFAULT_SCOPE, SCOPES
from realtime.labels import imagenet_labels
from realtime.progress import Progress

VGG16_LAYER = "block5_conv3"
DEFAULT_MODELS_DIR = Path("models")


class ExportError(RuntimeError):
    """The export cannot go on; the message says what to do instead."""


@dataclass(frozen=True)
class ExportConfig:
    weights: str = "imagenet"  # imagenet | random | PATH (.h5, .weights.h5, .keras)
    seed: int = 0
    gradients: str = contract.GRADIENTS_FULL
    output: Path | None = None
    model: Path | None = None  # another Keras CNN (.keras); None means VGG16
    layer: str | None = None
    labels: Path | None = None
    preprocessing: str = "caffe"
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
    check: Any  # CheckReport | None
    num_classes: int
    layer: str
    fidelity: Any = None  # quantize.Fidelity for --int8 with real calibration data


def default_output(config: ExportConfig) -> Path:
    stem = config.model.stem if config.model else "vgg16"
    suffix = "_int8" if config.int8 else ""
    return DEFAULT_MODELS_DIR / f"{stem}_gradcam_{config.gradients}{suffix}.onnx"


def load_keras_model(config: ExportConfig) -> Any:
    """VGG16 with the requested weights, or the user's own saved model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
    if config.gradients not in (contract.GRADIENTS_FULL, contract.GRADIENTS_POOLED, contract.GRADIENTS_NONE):
        raise ExportError(f"--gradients {config.gradients!r}: choose full, pooled or none")
    if config.preprocessing not in contract.PREPROCESSING_MODES:
        raise ExportError(f"--preprocess {config.preprocessing!r}: choose {', '.join(contract.PREPROCESSING_MODES)}")
    if config.model is not None and not config.layer:
        raise ExportError("--model needs --layer NAME (the conv layer to explain)")
    if config.int8 and config.int8_scope not in SCOPES:  # before the export, not after it
        raise ExportError(f"--int8-scope {config.int8_scope!r}: choose {', '.join(SCOPES)}")


def export(config: ExportConfig) -> ExportResult:
    """Load the Keras model the config names, then export it. Raises ExportError with advice."""
    _validate(config)
    progress = Progress((5 if config.self_check else 4) + (2 if config.int8 else 0), config.quiet)
    start = time.perf_counter()
    with progress.step("loading the Keras model"):
        model = load_keras_model(config)
    if not config.int8:
        return export_model(model, config, progress, start)
    # int8: write the checked fp32 graph, let go of TensorFlow's copy of the weights, then quantize
    output = config.output or default_output(config)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_config = replace(config, int8=False, output=Path(tmp) / "fp32.onnx")
        fp32 = export_model(model, fp32_config, progress, start)
        size = (int(model.input_shape[1]), int(model.input_shape[2]))
        del model
        _release_tensorflow()
        fidelity = quantize_checked(fp32.output, output, size, config, progress)
    return replace(fp32, output=output, fidelity=fidelity, seconds=time.perf_counter() - start)


def _release_tensorflow() -> None:
    """Drop Keras' global state and collect, so quantization does not stack on the TF model's memory."""
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


def export_model(
    model: Any, config: ExportConfig, progress: Progress | None = None, start: float | None = None
) -> ExportResult:
    """Build, convert, bind, check and save an in-memory Keras model."""
    _validate(config)
    start = time.perf_counter() if start is None else start
    if progress is None:
        progress = Progress((4 if config.self_check else 3) + (2 if config.int8 else 0), config.quiet)
    layer = config.layer or VGG16_LAYER

    from realtime.export import convert
    from realtime.export.graph import build_function, reference_gradcam
    from realtime.export.head import UnsupportedHeadError

    with progress.step(f"building the Grad-CAM function at {layer!r} ({config.gradients} gradients)"):
        try:
            fn = build_function(model, layer, config.gradients, config.preprocessing)
        except UnsupportedHeadError as exc:
            raise ExportError(str(exc)) from exc
        labels = resolve_labels(config, fn.head.num_classes)
    with progress.step("converting with tf2onnx (weights as inputs)"):
        proto = convert.convert_function(fn)
    with progress.step("binding weights as initializers"):
        convert.name_outputs(proto, fn.output_names)
        convert.bind_weights(proto, fn.weight_names, fn.weight_arrays)
        convert.fold_initializer_transposes(proto)
        convert.fold_initializer_ops(proto)
        convert.backward_matmuls_to_gemm(proto)
        name = config.model.stem if config.model else "vgg16"
        convert.set_metadata(proto, convert.build_metadata(labels, layer, config.preprocessing, config.gradients, name))
        del fn

    output = config.output or default_output(config)

    def check(path: Path) -> Any:
        if not config.self_check or config.gradients == contract.GRADIENTS_NONE:
            return None
        with progress.step("self-check against TF GradientTape"):
            height, width = (int(d) for d in model.input_shape[1:3])
            image, targets = self_check_inputs(len(labels), (height, width))
            got = convert.run_onnx(path, image, targets)
            ref = reference_gradcam(model, layer, config.preprocessing, image, targets)
            if not np.array_equal(got[contract.OUT_CLASSES], ref[contract.OUT_CLASSES]):
                onnx_classes, tf_classes = got[contract.OUT_CLASSES].tolist(), ref[contract.OUT_CLASSES].tolist()
                raise convert.SelfCheckError(f"classes differ: onnx {onnx_classes} vs tf {tf_classes}")
            report = convert.compare(got, ref)
            if not report.ok():
                raise convert.SelfCheckError(f"ONNX graph disagrees with TF: {report}; nothing was written")
            return report

    if not config.int8:
        report = convert.save_checked(proto, output, check)
        return ExportResult(output, time.perf_counter() - start, report, len(labels), layer)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        report = convert.save_checked(proto, fp32, check)
        del proto
        size = (int(model.input_shape[1]), int(model.input_shape[2]))
        fidelity = quantize_checked(fp32, output, size, config, progress)
    return ExportResult(output, time.perf_counter() - start, report, len(labels), layer, fidelity)


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
