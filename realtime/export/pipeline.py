"""gradcam-export as stages that read top to bottom; `export(config)` runs them.

1. import     importers/: Keras (tf2onnx) or an ONNX file -> one ForwardGraph (importers/passes/: what
              real-world files need before their head is analysed)
2. targets    targets/: which tensors to explain, and their layout (conv maps or token grids)
3. assemble   assemble.py: the head after each target (autodiff/head.py), its backward in ONNX ops
              (autodiff/backward.py, one rule per op in ops/), the contract outputs (contract_graph.py),
              the graph passes (graph/passes.py)
4. check      checks/: valid and TensorRT-parsable (portable.py), the backward against float64
              finite differences of the head (selfcheck.py), on a temporary file
5. write      graph/writing.py: moved into place only once checked
6. variants   variants/: int8 for this CPU (or the one asked for), or the TensorRT 8 profile and fp16
              for GPUs, each derived from the checked fp32 graph and checked against it

Each stage's time is kept (ExportResult.stages) and printed unless quiet.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from realtime import contract
from realtime.export import targets
from realtime.export.assemble import Assembled, assemble
from realtime.export.checks import portable, selfcheck
from realtime.export.checks.selfcheck import SelfCheckError
from realtime.export.config import (
    VGG16_LAYER,
    ExportConfig,
    ExportError,
    ExportResult,
    default_output,
    model_name,
    self_check_inputs,
    validate,
)
from realtime.export.detect.head import looks_like_a_detector
from realtime.export.graph.writing import save_checked
from realtime.export.importers import ForwardGraph, ModelImportError
from realtime.export.targets.tokens import TokenHint
from realtime.export.variants import stage as variant_stage
from realtime.files import folder_for
from realtime.progress import Progress

__all__ = [
    "ExportConfig", "ExportError", "ExportResult", "SelfCheckError", "export", "export_forward", "export_model",
    "import_keras", "import_onnx",
]  # fmt: skip

KERAS_STEPS, ONNX_STEPS = 2, 1  # loading and converting; reading


def export(config: ExportConfig) -> ExportResult:
    """Import the model the config names, then build, check and write its Grad-CAM graph."""
    validate(config)
    start = time.perf_counter()
    if config.onnx is not None:
        progress = _progress(config, ONNX_STEPS)
        with progress.step(f"reading {config.onnx}", "import"):
            forward = import_onnx(config)
        if looks_like_a_detector(forward.model):  # one [N, 4 + C, A] output: the detector's road
            return _detector(forward, config, progress, start)
        return _finish(forward, config, progress, start)
    from realtime.export.importers import keras

    progress = _progress(config, KERAS_STEPS)
    with progress.step("loading the Keras model", "load"):
        model = keras.load_keras_model(config)
    forward = _keras_forward(model, config, progress)
    del model
    keras.release_tensorflow()  # before the backward and int8: TF's copy of the weights is no longer needed
    return _finish(forward, config, progress, start)


def _detector(forward: ForwardGraph, config: ExportConfig, progress: Progress, start: float) -> ExportResult:
    from realtime.export.detect.stage import export_detector

    options = {"--layer": config.layer, "--input-gradients": config.input_gradients, "--int8": config.int8,
               "--fp16": config.fp16, "--trt8": config.trt8}  # fmt: skip
    asked = [flag for flag, on in options.items() if on]
    if asked:
        raise ExportError(f"{config.onnx} is a detector: {', '.join(asked)} are for classifier graphs (a detector "
                          "graph explains each box at the head's inputs, in fp32); drop them")  # fmt: skip
    progress.total = progress.done + 2 + int(config.self_check)
    return export_detector(forward, config, progress, start)


def export_model(
    model: Any, config: ExportConfig, progress: Progress | None = None, start: float | None = None
) -> ExportResult:
    """Export an in-memory Keras model."""
    validate(config)
    progress = progress or _progress(config, KERAS_STEPS - 1)
    start = time.perf_counter() if start is None else start
    return _finish(_keras_forward(model, config, progress), config, progress, start)


def export_forward(forward: ForwardGraph, config: ExportConfig) -> ExportResult:
    """Stages 2-6 on a graph an importer made already (`import_onnx`, `import_keras`). The graph is
    rewritten in place: pass `forward.copy()` to export it again, with other options."""
    validate(config)
    return _finish(forward, config, _progress(config, 0), time.perf_counter())


def import_keras(model: Any, config: ExportConfig) -> ForwardGraph:
    """Stage 1 for an in-memory Keras model: its forward pass, with the config's layers as tensors."""
    return _keras_forward(model, config, Progress(1, quiet=True))


def import_onnx(config: ExportConfig) -> ForwardGraph:
    from realtime.export.importers.onnx_file import load_onnx

    assert config.onnx is not None
    try:
        return load_onnx(config.onnx, config.layout, config.input_size, output_name=config.output_name)
    except ModelImportError as exc:
        raise ExportError(str(exc)) from exc


def _progress(config: ExportConfig, import_steps: int) -> Progress:
    checked = config.self_check and config.gradients != contract.GRADIENTS_NONE
    return Progress(import_steps + 2 + int(checked) + variant_stage.steps(config), config.quiet)


def _keras_forward(model: Any, config: ExportConfig, progress: Progress) -> ForwardGraph:
    from realtime.export.importers import keras

    layer = config.layer or VGG16_LAYER
    with progress.step("converting the forward pass with tf2onnx", "convert"):
        try:
            return keras.keras_forward(model, [layer, *config.more_layers], model_name(config))
        except ModelImportError as exc:
            raise ExportError(str(exc)) from exc


def _finish(forward: ForwardGraph, config: ExportConfig, progress: Progress, start: float) -> ExportResult:
    """The same for every importer: targets, assemble, check, write, int8."""
    output = config.output or default_output(config)
    with progress.step(f"building the Grad-CAM graph ({config.gradients} gradients)", "build"):
        hint = TokenHint(config.grid, config.prefix_tokens)
        try:
            chosen = targets.choose(forward, config.layer, config.more_layers, bool(config.input_gradients), hint)
        except targets.HeadError as exc:
            raise ExportError(str(exc)) from exc
        built = assemble(forward, chosen, config)
    size = _input_size(forward)
    del forward
    variant = variant_stage.chosen(config)
    if variant is None:
        report = save_checked(built.model, output, lambda path: _check(path, built, config, size, progress))
        return _result(output, start, report, built, progress)
    with folder_for(output), tempfile.TemporaryDirectory(dir=output.parent) as tmp:  # failed: no empty folder left
        fp32 = Path(tmp) / "fp32.onnx"
        report = save_checked(built.model, fp32, lambda path: _check(path, built, config, size, progress))
        derived = variant.derive(fp32, built.model, output, size, config, progress)
    return _result(output, start, report, built, progress, derived.fidelity, derived.int8_target)


def _check(
    path: Path, built: Assembled, config: ExportConfig, size: tuple[int, int], progress: Progress
) -> selfcheck.SelfCheck | None:
    """Portable, then (unless asked not to) right against finite differences: before the file is moved in."""
    with progress.step("checking the graph: onnx.checker, TensorRT's operators", "portable"):
        try:
            portable.check_portable(path, model=built.model)
        except portable.GraphCheckError as exc:
            raise SelfCheckError(str(exc)) from exc
    if not config.self_check or config.gradients == contract.GRADIENTS_NONE:
        return None
    with progress.step("self-check: the backward against float64 finite differences of the head", "self-check"):
        image, chosen = self_check_inputs(len(built.labels), size)
        if built.static_batch:  # one image: a ranked and a given target still both run
            image, chosen = image[:1], chosen[:1]
        return selfcheck.check_layers(
            path, built.model, built.heads, built.layers, image, chosen, stacked=not built.static_batch
        )


def _result(
    output: Path, start: float, report: Any, built: Assembled, progress: Progress, fidelity: Any = None,
    target: str | None = None,
) -> ExportResult:  # fmt: skip
    seconds = time.perf_counter() - start
    stages = tuple(progress.times.items())
    return ExportResult(
        output, seconds, report, built.heads[0].num_classes, built.layers[0], fidelity, target, stages,
        static_batch=built.static_batch,
    )  # fmt: skip


def _input_size(forward: ForwardGraph) -> tuple[int, int]:
    value = next(v for v in forward.model.graph.input if v.name == contract.INPUT_IMAGE)
    dims = value.type.tensor_type.shape.dim
    return int(dims[1].dim_value), int(dims[2].dim_value)
