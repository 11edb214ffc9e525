"""The names both sides of the contract use: inputs, outputs, metadata keys, and the shared checks.

Both sides import these names, so a renamed output is a one-line change that
the validator catches at load time instead of a KeyError mid-demo.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
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

# detectors (contract.detector): the task, and what a detector graph gives beside its levels' maps
META_TASK = "gradcam.task"  # "detect"; absent: a classifier
TASK_CLASSIFY, TASK_DETECT = "classify", "detect"
DETECTOR_VERSION = "detect1"
META_STRIDES = "gradcam.strides"  # JSON list: each level's stride in input pixels
META_MAX_BOXES = "gradcam.max_boxes"  # detections kept per image after NMS
META_CONF = "gradcam.conf"  # the confidence threshold baked into the graph
META_IOU = "gradcam.iou"  # the NMS IoU threshold baked into the graph
META_NUM_CLASSES = "gradcam.num_classes"
META_FIT = "gradcam.fit"  # how frames fit the input: "letterbox" (Ultralytics' grey 114 borders)
OUT_BOXES = "boxes"  # [N,D,4] x1, y1, x2, y2 in model-input pixels; zeros past `count`
OUT_SCORES = "scores"  # [N,D] each kept box's class score (sigmoid), best first
OUT_BOX_CLASSES = "box_classes"  # [N,D] int64, -1 past `count`
OUT_COUNT = "count"  # [N] int64: boxes kept
OUT_EXPLAINED = "explained"  # [N,K] int64: the kept box each target column explains, -1 for none
OUT_BOX_LOGITS = "box_logits"  # [N,K] the explained box's class logit (before the sigmoid)
OUT_ANCHORS = "anchors"  # [N,K,3] int64: the explained box's level, row and column on that level
OUT_LAYERCAM = "layercam"  # per level [N,K,h,w]: ReLU(sum_c ReLU(G_c) A_c), raw
OUT_MAP = "map"  # [N,K,h0,w0]: each level's LayerCAM over its max, on the finest level's grid, their max
DETECTOR_OUTPUTS = (OUT_BOXES, OUT_SCORES, OUT_BOX_CLASSES, OUT_COUNT, OUT_EXPLAINED, OUT_BOX_LOGITS,
                    OUT_ANCHORS, OUT_MAP)  # fmt: skip
LEVEL_OUTPUTS = (OUT_ACTIVATIONS, OUT_WEIGHTS, OUT_CAM, OUT_LAYERCAM, OUT_GRADIENTS)  # gradients: [N,K,s,s,c]
MAX_BOXES = 32  # detections kept per image, at most

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
    "unit": "RGB scaled to [0, 1] (Ultralytics YOLO)",
}


class ContractError(ValueError):
    """A model file does not follow the Grad-CAM graph contract."""


def fp16_copy(path: Path) -> Path:
    """Where gradcam-export --fp16 puts the fp16 copy of `path` by default (the runtime prefers it on CUDA)."""
    return path if path.stem.endswith(FP16_SUFFIX) else path.with_name(f"{path.stem}{FP16_SUFFIX}{path.suffix}")


def static_dim(dim: object) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


MAX_LABEL = 80  # characters: a label longer than a caption line is cut once, here, not measured every frame
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")  # CSI, OSC, 2-byte ESC
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")  # C0, C1, bidi overrides


def clean_text(text: str, limit: int = MAX_LABEL) -> str:
    """Text from a model file or a server as data: terminal escapes and control characters removed (they
    would move a terminal's cursor or hide a log line), cut to `limit` characters. Linear in its length."""
    text = _CONTROLS.sub(" ", _ESCAPES.sub("", text[: limit * 8])).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        return tuple(clean_text(label) for label in labels)
    return tuple(f"class_{i}" for i in range(num_classes))


CALIBRATION_COUNT = 32  # gradcam-export --int8: frames to calibrate on


SAVE_EVERY = 15  # --save-frames keeps every 15th frame: neighbouring frames are nearly the same picture


def frames_wanted(calibration_count: int) -> int:
    """Frames int8 wants in all: `calibration_count` to calibrate, and a quarter more held out for its check."""
    return calibration_count * 5 // 4


INT8_WANTS = frames_wanted(CALIBRATION_COUNT)  # 40
