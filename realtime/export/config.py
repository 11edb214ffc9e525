"""What an export is asked for, and what can be decided from that alone (names, labels, checks).

Read by every stage of the pipeline, below all of them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realtime import contract
from realtime.arguments import not_an_input
from realtime.contract import CALIBRATION_COUNT
from realtime.engines.int8_cpu import INT8_TARGETS
from realtime.export.graph.layout import LAYOUTS
from realtime.export.preprocessing import PRESETS, Preprocess
from realtime.export.variants.int8.quantize import DEFAULT_SCOPE, SCOPES
from realtime.files import OutputPathError, check_output_file, check_output_folder
from realtime.labels import imagenet_labels

VGG16_LAYER = "block5_conv3"
DEFAULT_MODELS_DIR = Path("models")
INPUT_GRADIENTS = ("", "saliency", "guided", "both")  # saliency: d logit / d input; guided: guided backprop


class ExportError(RuntimeError):
    """The export cannot go on; the message says what to do instead."""


MAX_INPUT_SIDE = 8192  # an input size beyond this is a typo: the self-check alone would need gigabytes


@dataclass(frozen=True)
class ExportConfig:
    weights: str = "imagenet"  # imagenet | random | PATH (.h5, .weights.h5, .keras)
    seed: int = 0
    gradients: str = contract.GRADIENTS_FULL
    output: Path | None = None
    model: Path | None = None  # another Keras CNN (.keras); None means VGG16
    onnx: Path | None = None  # any ONNX image classifier instead of a Keras model
    layer: str | None = None
    more_layers: tuple[str, ...] = ()  # further layers to explain in the same graph (contract version 2)
    input_gradients: str = ""  # "", saliency, guided or both: gradients at the input (contract version 2)
    labels: Path | None = None
    preprocessing: str | None = None  # a preset; None: caffe for Keras VGG16, torch for ONNX
    mean: tuple[float, float, float] | None = None  # 0-255 scale, the model's channel order
    std: tuple[float, float, float] | None = None
    channels: str = "rgb"  # with mean/std: the channel order the model reads
    layout: str | None = None  # NCHW | NHWC of an ONNX model's input; None: read from its shape
    input_size: tuple[int, int] | None = None  # for ONNX inputs with dynamic height and width
    output_name: str | None = None  # the ONNX output that holds the logits; None: the one with a class axis
    grid: tuple[int, int] | None = None  # how a token layer's patch tokens lie (HxW); None: from the input size
    prefix_tokens: int | None = None  # class / distillation tokens before them; None: inferred (0-2)
    self_check: bool = True
    quiet: bool = False
    verbose: bool = False  # third-party noise too (quiet.py silences it by default)
    int8: bool = False
    calibration: str = "demo"  # demo | random | DIR
    int8_scope: str = DEFAULT_SCOPE
    calibration_count: int = CALIBRATION_COUNT
    int8_cpu: str = "auto"  # auto (this CPU) | vnni | no-vnni: the CPUs the int8 graph is made for
    fp16: bool = False  # an fp16 copy for GPUs (uint8 in, fp32 maps out), checked against fp32 here
    trt8: bool = False  # the TensorRT 8 profile (JetPack 5/6): float32 image, int32 targets and classes
    conf: float = 0.25  # detectors: boxes scoring above this are kept (Ultralytics' predict default)
    iou: float = 0.7  # detectors: NMS's overlap threshold (Ultralytics' predict default)
    max_boxes: int = contract.MAX_BOXES  # detectors: boxes kept per image after NMS
    triton_repo: Path | None = None  # also write a Triton model repository there (export/triton/repository.py)
    triton_tensorrt: str | None = None  # fp16 | fp32: the TensorRT accelerator block in its config.pbtxt


@dataclass(frozen=True)
class ExportResult:
    output: Path
    seconds: float
    check: Any  # selfcheck.SelfCheck | None
    num_classes: int
    layer: str
    fidelity: Any = None  # quantize.Fidelity for --int8 with real calibration data, Fp16Fidelity for --fp16
    int8_target: str | None = None  # vnni | no-vnni for --int8: the form written
    stages: tuple[tuple[str, float], ...] = ()  # (stage, seconds) in the order they ran
    static_batch: bool = False  # the graph runs one image per call (its batch could not be freed)

    def describe_stages(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.stages)


def model_name(config: ExportConfig) -> str:
    source = config.onnx or config.model
    return source.stem if source else "vgg16"


def default_output(config: ExportConfig) -> Path:
    suffix = "_int8" if config.int8 else ""
    suffix += "_trt8" if config.trt8 else ""
    suffix += contract.FP16_SUFFIX if config.fp16 else ""
    return DEFAULT_MODELS_DIR / f"{model_name(config)}_gradcam_{config.gradients}{suffix}.onnx"


def read_labels(path: Path) -> list[str]:
    """One class name per line, UTF-8, each name once (a class picked by name would land on the first)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = "is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"cannot be read ({exc.strerror})"
        raise ExportError(f"--labels {path} {why}: one class name per line, UTF-8") from exc
    lines = [contract.clean_text(line) for line in text.splitlines() if line.strip()]
    repeated = sorted(name for name, times in Counter(lines).items() if times > 1)  # linear: 20,000 names too
    if repeated:
        names = ", ".join(map(repr, repeated[:3]))
        raise ExportError(f"--labels {path} names {names} more than once; class names must be distinct")
    return lines


def resolve_labels(config: ExportConfig, num_classes: int) -> list[str]:
    if config.labels is not None:
        lines = read_labels(config.labels)
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


def validate(config: ExportConfig) -> None:
    """Everything that can be said about the config before any slow work starts."""
    if config.output is not None:
        try:
            not_an_input(config.output, {"input model": config.onnx or config.model, "labels file": config.labels})
        except ValueError as exc:
            raise ExportError(str(exc)) from exc
    if config.labels is not None:
        read_labels(config.labels)  # in the first second, not after the import
    if config.input_size is not None and max(config.input_size) > MAX_INPUT_SIDE:
        raise ExportError(
            f"--input-size {config.input_size[0]}x{config.input_size[1]}: at most {MAX_INPUT_SIDE} pixels a side"
        )
    if not (0.0 <= config.conf <= 1.0 and 0.0 <= config.iou <= 1.0 and 1 <= config.max_boxes <= contract.MAX_BOXES):
        raise ExportError(f"--conf and --iou are from 0 to 1, --max-boxes from 1 to {contract.MAX_BOXES}")
    if config.gradients not in (contract.GRADIENTS_FULL, contract.GRADIENTS_POOLED, contract.GRADIENTS_NONE):
        raise ExportError(f"--gradients {config.gradients!r}: choose full, pooled or none")
    if config.preprocessing is not None and config.preprocessing not in contract.PREPROCESSING_MODES:
        raise ExportError(f"--preprocess {config.preprocessing!r}: choose {', '.join(contract.PREPROCESSING_MODES)}")
    if (config.mean is None) != (config.std is None):
        raise ExportError("--mean and --std go together")
    if config.std is not None and any(s <= 0 for s in config.std):
        raise ExportError(f"--std {config.std}: every value must be positive")
    if config.output_name is not None and config.onnx is None:
        raise ExportError("--output-name names an output of an ONNX model; use it with --onnx")
    if config.onnx is not None and config.model is not None:
        raise ExportError("--onnx and --model are two different sources; give one")
    if (config.more_layers or config.input_gradients in ("saliency", "both")) and (
        config.gradients != contract.GRADIENTS_FULL
    ):
        raise ExportError("several layers and saliency need --gradients full (one backward serves them all)")
    if config.input_gradients == "guided" and config.gradients == contract.GRADIENTS_NONE:
        raise ExportError("--input-gradients guided needs Grad-CAM's weights: --gradients full or pooled")
    if config.triton_tensorrt is not None and config.triton_repo is None:
        raise ExportError("--triton-tensorrt sets the accelerator of a Triton repository: add --triton-repo DIR")
    if config.triton_repo is not None:
        _check_triton(config)
    if config.fp16 and config.gradients == contract.GRADIENTS_NONE:
        raise ExportError("--fp16 is checked by comparing its maps with fp32's: use --gradients pooled or full")
    if config.int8 and (config.fp16 or config.trt8):
        raise ExportError("--int8 graphs are for CPUs; --fp16 and --trt8 make graphs for GPUs: choose one")
    if config.int8 and (config.more_layers or config.input_gradients):
        raise ExportError("--int8 takes graphs with one layer and no input gradients")
    if config.input_gradients not in INPUT_GRADIENTS:
        raise ExportError(f"--input-gradients {config.input_gradients!r}: choose {', '.join(INPUT_GRADIENTS[1:])}")
    if config.model is not None and not config.layer:
        raise ExportError("--model needs --layer NAME (the conv layer to explain)")
    if config.layout is not None and config.layout not in LAYOUTS:
        raise ExportError(f"--layout {config.layout!r}: choose NCHW or NHWC")
    if config.int8 and config.int8_scope not in SCOPES:  # before the export, not after it
        raise ExportError(f"--int8-scope {config.int8_scope!r}: choose {', '.join(SCOPES)}")
    if config.int8_cpu not in ("auto", *INT8_TARGETS):
        raise ExportError(f"--int8-cpu {config.int8_cpu!r}: choose auto, {', '.join(INT8_TARGETS)}")
    if config.labels is not None and not config.labels.is_file():
        raise ExportError(f"--labels {config.labels}: no such file")
    try:  # the same check gradcam-live makes of its outputs, in the first second
        check_output_file(config.output or default_output(config), "--output", (".onnx",))
    except OutputPathError as exc:
        raise ExportError(str(exc)) from exc


def _check_triton(config: ExportConfig) -> None:
    """Before the export's slow work: the repository's folder, the accelerator, and Triton's protobuf."""
    from realtime.export.triton.repository import TENSORRT_PRECISIONS, TritonRepoError, parse_config

    assert config.triton_repo is not None
    if config.triton_tensorrt is not None and config.triton_tensorrt not in TENSORRT_PRECISIONS:
        raise ExportError(f"--triton-tensorrt {config.triton_tensorrt!r}: choose {' or '.join(TENSORRT_PRECISIONS)}")
    try:
        check_output_folder(config.triton_repo, "--triton-repo")
        parse_config('name: "probe"')
    except (OutputPathError, TritonRepoError) as exc:
        raise ExportError(str(exc)) from exc


def preprocess_spec(config: ExportConfig, default: str | None = None) -> tuple[str, Preprocess]:
    """(name for the metadata, the preprocessing to bake in); `default` when the config names none (a detector's
    is Ultralytics' unit scale)."""
    if config.mean is not None and config.std is not None:
        return "custom", Preprocess(config.channels, config.mean, config.std)
    name = config.preprocessing or default or ("torch" if config.onnx is not None else "caffe")
    return name, PRESETS[name]
