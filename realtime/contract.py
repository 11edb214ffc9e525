"""The graph contract shared by the exporter and the runtime.

Both sides import these names, so a renamed output is a one-line change that
the validator catches at load time instead of a KeyError mid-demo.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CONTRACT_VERSION = "1"  # what a graph with one layer and no input gradients is written as
CONTRACT_VERSION_2 = "2"  # several layers and/or input gradients; version 1's outputs describe layer 0
READABLE_VERSIONS = (CONTRACT_VERSION, CONTRACT_VERSION_2)

INPUT_IMAGE = "image"
INPUT_TARGETS = "targets"

OUT_LOGITS = "logits"
OUT_PROBABILITIES = "probabilities"
OUT_CLASSES = "classes"
OUT_ACTIVATIONS = "activations"
OUT_WEIGHTS = "weights"
OUT_CAM = "cam"
OUT_GRADIENTS = "gradients"
OUT_SALIENCY = "saliency"  # v2: [N,K,H,W,3] d logit / d model input, at the input's resolution
OUT_GUIDED = "guided"  # v2: [N,K,H,W,3] guided backpropagation to the model input
LAYER_OUTPUTS = (OUT_ACTIVATIONS, OUT_WEIGHTS, OUT_CAM, OUT_GRADIENTS)


def layer_output(name: str, layer: int) -> str:
    """A per-layer output's name: layer 0 keeps version 1's name, layer i > 0 adds _i."""
    return name if layer == 0 else f"{name}_{layer}"


# what a graph provides beyond Grad-CAM at one layer: the CAM methods declare which of these they need
GRADIENTS, SALIENCY, GUIDED, LAYERS = "gradients", "saliency", "guided", "layers"

REQUIRED_INPUTS = (INPUT_IMAGE, INPUT_TARGETS)
DIM_BATCH, DIM_TARGETS = "N", "K"  # the names of the free dims: images per call, targets per image
MAX_TARGETS = 16  # columns of `targets`: the graph ranks this many classes (a small TopK, constant for TensorRT)
PROFILE_DEFAULT, PROFILE_TRT8 = "default", "trt8"
# input types by profile, as onnxruntime names them; trt8: for TensorRT 8's parser (export/variants/trt8.py)
PROFILE_TYPES = {
    PROFILE_DEFAULT: {INPUT_IMAGE: "tensor(uint8)", INPUT_TARGETS: "tensor(int64)"},
    PROFILE_TRT8: {INPUT_IMAGE: "tensor(float)", INPUT_TARGETS: "tensor(int32)"},
}
INPUT_TYPES = PROFILE_TYPES[PROFILE_DEFAULT]
REQUIRED_OUTPUTS = (OUT_LOGITS, OUT_PROBABILITIES, OUT_CLASSES, OUT_ACTIVATIONS, OUT_WEIGHTS, OUT_CAM)

# metadata_props keys
META_CONTRACT = "gradcam.contract_version"
META_LABELS = "gradcam.labels"
META_LAYER = "gradcam.layer"
META_PREPROCESSING = "gradcam.preprocessing"
META_GRADIENTS = "gradcam.gradients"
META_MODEL_NAME = "gradcam.model_name"
META_PRECISION = "gradcam.precision"
META_BATCH = "gradcam.batch"  # "dynamic", or "1": the graph runs one image at a time (a batch baked in)
META_INT8_TARGET = "gradcam.int8_target"  # int8 graphs: vnni | no-vnni, the CPUs they were quantized for
META_INT8_CPU = "gradcam.int8_cpu"  # int8 graphs: the CPU they were exported and checked on
META_LAYERS = "gradcam.layers"  # v2: JSON list of the explained layers, layer 0 first
FP16_SUFFIX = "_fp16"  # gradcam-export --fp16's default names: <graph>_fp16.onnx beside the fp32 graph
META_PROFILE = "gradcam.profile"  # trt8: float32 image, int32 targets and classes; absent: the default profile

GRADIENTS_FULL = "full"
GRADIENTS_POOLED = "pooled"
GRADIENTS_NONE = "none"

# How the graph turns uint8 BGR into the model's input. The exporter builds the
# ops, the runtime only reads the name (for the HUD and for sanity checks).
PREPROCESSING_MODES: Mapping[str, str] = {
    "caffe": "BGR, minus the ImageNet channel means (VGG16/19, ResNet50)",
    "tf": "RGB scaled to [-1, 1] (MobileNetV2)",
    "torch": "RGB scaled to [0, 1], minus mean, over std",
    "raw": "RGB as float 0..255; the model rescales itself (EfficientNet)",
}


class ContractError(ValueError):
    """A model file does not follow the Grad-CAM graph contract."""


@dataclass(frozen=True)
class LayerInfo:
    """One explained layer of a graph: its name and its map's size."""

    name: str
    map_height: int
    map_width: int
    channels: int
    has_gradients: bool


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about a loaded Grad-CAM graph."""

    input_height: int
    input_width: int
    num_classes: int
    map_height: int
    map_width: int
    channels: int
    labels: tuple[str, ...]
    layer: str
    preprocessing: str
    gradients: str
    precision: str
    model_name: str
    has_gradients_output: bool
    layers: tuple[LayerInfo, ...] = ()
    provides: frozenset[str] = frozenset()
    max_batch: int | None = None  # None: any batch; 1: one image per call (the runtime feeds sources one by one)
    profile: str = PROFILE_DEFAULT  # trt8: the runtime feeds a float32 image and int32 targets

    @property
    def gradient_outputs(self) -> frozenset[str]:
        """The outputs a call that needs no gradients leaves out (gradients of every layer, the input's)."""
        every = {layer_output(OUT_GRADIENTS, i) for i in range(len(self.layers))}
        return frozenset({OUT_SALIENCY, OUT_GUIDED} | every)


def fp16_copy(path: Path) -> Path:
    """Where gradcam-export --fp16 puts the fp16 copy of `path` by default (the runtime prefers it on CUDA)."""
    return path if path.stem.endswith(FP16_SUFFIX) else path.with_name(f"{path.stem}{FP16_SUFFIX}{path.suffix}")


def _static(dim: object) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def parse_labels(raw: str | None, num_classes: int) -> tuple[str, ...]:
    """Labels from metadata (a JSON list), or class_i names when absent."""
    if raw:
        try:
            labels = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # bad JSON, 4300-digit numbers, deep nesting
            raise ContractError(f"metadata {META_LABELS} is not a JSON list of names: {str(exc)[:80]}") from exc
        if not isinstance(labels, list) or len(labels) != num_classes:
            raise ContractError(
                f"metadata {META_LABELS} has {len(labels) if isinstance(labels, list) else '?'} "
                f"labels but the model has {num_classes} classes"
            )
        if not all(isinstance(x, str) for x in labels):
            raise ContractError(f"metadata {META_LABELS} must list class names as strings")
        return tuple(labels)
    return tuple(f"class_{i}" for i in range(num_classes))


def validate(
    inputs: Mapping[str, Sequence[object]],
    outputs: Mapping[str, Sequence[object]],
    metadata: Mapping[str, str],
    source: str = "model",
    input_types: Mapping[str, str] | None = None,
) -> ModelInfo:
    """Check names, shapes and input types of a loaded graph, and describe it.

    `inputs`/`outputs` map names to shapes as onnxruntime reports them
    (ints for static dims, strings or None for dynamic ones); `input_types`
    names to onnxruntime's type strings ("tensor(uint8)").
    """
    hint = "re-export it with gradcam-export"
    missing_in = [n for n in REQUIRED_INPUTS if n not in inputs]
    if missing_in:
        raise ContractError(f"{source} lacks input(s) {', '.join(missing_in)}; {hint}")
    missing_out = [n for n in REQUIRED_OUTPUTS if n not in outputs]
    if missing_out:
        raise ContractError(f"{source} lacks output(s) {', '.join(missing_out)}; {hint}")
    profile = metadata.get(META_PROFILE, PROFILE_DEFAULT)
    if profile not in PROFILE_TYPES:
        raise ContractError(f"{source} has profile {profile!r}; this runtime reads {', '.join(PROFILE_TYPES)}; {hint}")
    for name, wanted in PROFILE_TYPES[profile].items():
        got = (input_types or {}).get(name, wanted)
        if got != wanted:
            raise ContractError(f"{source}: input {name} is {got}, its profile ({profile}) needs {wanted}; {hint}")
    version = metadata.get(META_CONTRACT)
    if version not in READABLE_VERSIONS:
        raise ContractError(
            f"{source} has contract version {version!r}, this runtime reads {' and '.join(READABLE_VERSIONS)}; {hint}"
        )

    image = list(inputs[INPUT_IMAGE])
    if len(image) != 4 or _static(image[3]) != 3:
        raise ContractError(f"{source}: input {INPUT_IMAGE} must be [N,H,W,3] BGR, got {image}")
    height, width = _static(image[1]), _static(image[2])
    if height is None or width is None:
        raise ContractError(f"{source}: input {INPUT_IMAGE} needs a static height and width, got {image}")

    logits = list(outputs[OUT_LOGITS])
    activations = list(outputs[OUT_ACTIVATIONS])
    num_classes = _static(logits[-1]) if logits else None
    if len(logits) != 2 or num_classes is None:
        raise ContractError(f"{source}: output {OUT_LOGITS} must be [N,C], got {logits}")
    if len(activations) != 4 or any(_static(d) is None for d in activations[1:]):
        raise ContractError(f"{source}: output {OUT_ACTIVATIONS} must be [N,h,w,k], got {activations}")
    map_h, map_w, channels = (int(d) for d in activations[1:])  # type: ignore[call-overload]
    layers = _layers(outputs, metadata, source)
    provides = {GRADIENTS} if OUT_GRADIENTS in outputs else set()
    provides |= {name for name in (OUT_SALIENCY, OUT_GUIDED) if name in outputs}
    if len(layers) > 1 and all(layer.has_gradients for layer in layers):
        provides.add(LAYERS)

    return ModelInfo(
        input_height=height,
        input_width=width,
        num_classes=num_classes,
        map_height=map_h,
        map_width=map_w,
        channels=channels,
        labels=parse_labels(metadata.get(META_LABELS), num_classes),
        layer=metadata.get(META_LAYER, "?"),
        preprocessing=metadata.get(META_PREPROCESSING, "caffe"),
        gradients=metadata.get(META_GRADIENTS, GRADIENTS_FULL if OUT_GRADIENTS in outputs else GRADIENTS_POOLED),
        precision=metadata.get(META_PRECISION, "fp32"),
        model_name=metadata.get(META_MODEL_NAME, source),
        has_gradients_output=OUT_GRADIENTS in outputs,
        layers=layers,
        provides=frozenset(provides),
        max_batch=1 if metadata.get(META_BATCH) == "1" else None,
        profile=profile,
    )


def _layers(outputs: Mapping[str, Sequence[object]], metadata: Mapping[str, str], source: str) -> tuple[LayerInfo, ...]:
    """Every explained layer: version 1's outputs are layer 0, `activations_i` and the rest layer i."""
    try:
        names = json.loads(metadata[META_LAYERS]) if META_LAYERS in metadata else [metadata.get(META_LAYER, "?")]
    except (ValueError, RecursionError) as exc:
        raise ContractError(f"{source}: metadata {META_LAYERS} is not a JSON list: {str(exc)[:80]}") from exc
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ContractError(f"{source}: metadata {META_LAYERS} must list the layer names")
    layers = []
    for i, name in enumerate(names):
        missing = [layer_output(o, i) for o in LAYER_OUTPUTS[:3] if layer_output(o, i) not in outputs]
        if missing:
            raise ContractError(f"{source}: layer {name!r} lacks output(s) {', '.join(missing)}; re-export it")
        dims = list(outputs[layer_output(OUT_ACTIVATIONS, i)])
        if len(dims) != 4 or any(_static(d) is None for d in dims[1:]):
            raise ContractError(f"{source}: output {layer_output(OUT_ACTIVATIONS, i)} must be [N,h,w,k], got {dims}")
        h, w, c = (int(d) for d in dims[1:])  # type: ignore[call-overload]
        layers.append(LayerInfo(name, h, w, c, layer_output(OUT_GRADIENTS, i) in outputs))
    return tuple(layers)


CALIBRATION_COUNT = 32  # gradcam-export --int8: frames to calibrate on


SAVE_EVERY = 15  # --save-frames keeps every 15th frame: neighbouring frames are nearly the same picture


def frames_wanted(calibration_count: int) -> int:
    """Frames int8 wants in all: `calibration_count` to calibrate, and a quarter more held out for its check."""
    return calibration_count * 5 // 4


INT8_WANTS = frames_wanted(CALIBRATION_COUNT)  # 40
