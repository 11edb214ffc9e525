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
from pathlib import Path
from typing import Any

from realtime.export.config import (
    VGG16_LAYER,
    ExportConfig,
    ExportError,
    ExportResult,
    default_output,
    model_name,
    validate,
)
from realtime.progress import Progress

__all__ = ["ExportConfig", "ExportError", "ExportResult", "export", "export_model"]


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


def export(config: ExportConfig) -> ExportResult:
    """Import the model the config names, then build, check and write its Grad-CAM graph."""
    from realtime.export import importers

    validate(config)
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
    validate(config)
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
            return importers.keras_forward(model, [layer, *config.more_layers], model_name(config))
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
        fidelity, target = quantize_checked(fp32, output, built.input_size, config, progress)
    seconds = time.perf_counter() - start
    return ExportResult(output, seconds, built.check, built.num_classes, built.layer, fidelity, target)


def quantize_checked(
    fp32: Path, output: Path, size: tuple[int, int], config: ExportConfig, progress: Progress
) -> tuple[Any, str]:
    """Static int8 of the forward path for the CPUs asked for, then int8 against fp32 on held-out images
    (not on random data), on this CPU. Returns (fidelity or None, the int8 target written)."""
    from realtime import cpu
    from realtime.export import calibration, quantize

    try:
        images = calibration.calibration_images(config.calibration, size, config.calibration_count * 5 // 4)
    except quantize.QuantizeError as exc:
        raise ExportError(str(exc)) from exc
    calibrate, held_out = images[: config.calibration_count], images[config.calibration_count :]
    target = cpu.int8_target(config.int8_cpu)
    if not config.quiet:
        print(f"      int8 for {target} CPUs: {cpu.target_reason(config.int8_cpu)}", file=sys.stderr)
    with progress.step(f"quantizing to int8 ({config.int8_scope}) on {len(calibrate)} {config.calibration} images"):
        quantize.quantize(fp32, output, calibrate, config.int8_scope, target)
    if config.calibration == "random":
        return None, target
    with progress.step("fidelity: int8 against fp32 on held-out images"):
        if config.calibration == "demo":
            held, masks = calibration.demo_holdout(100, size)
            result = calibration.fidelity(fp32, output, held, masks)
        elif len(held_out):
            result = calibration.fidelity(fp32, output, held_out)
        else:
            return None, target
    if not config.quiet:
        print(f"      on {cpu.detect().describe()}: {calibration.describe(result)}", file=sys.stderr)
    return result, target
