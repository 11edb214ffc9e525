"""A detector's Grad-CAM graph, as the runtime reads it: the kept boxes, and per level each explained box's maps.

Inputs as a classifier's: `image` [N,H,W,3] uint8 BGR, letterboxed to the model's size by the runtime, and
`targets` [N,K] int64 (column k: the k-th best kept box, among all classes for -1 or among class c for c).
The levels are the detect head's inputs, one per stride; their outputs are named as a classifier's layers
(level 0 plain, level i with `_i`), with a LayerCAM map beside Grad-CAM's, and gradients given only in a
window around the explained box's cell (they are zero elsewhere).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from realtime.contract.classifier import LayerInfo, check_sizes
from realtime.contract.names import (
    DETECTOR_OUTPUTS,
    DETECTOR_VERSION,
    GRADIENTS,
    INPUT_IMAGE,
    LAYERS,
    LEVEL_OUTPUTS,
    MAX_BOXES,
    META_BATCH,
    META_CONF,
    META_CONTRACT,
    META_IOU,
    META_LABELS,
    META_LAYERS,
    META_MODEL_NAME,
    META_NUM_CLASSES,
    META_PRECISION,
    META_PREPROCESSING,
    META_STRIDES,
    OUT_ACTIVATIONS,
    OUT_BOXES,
    OUT_GRADIENTS,
    OUT_SCORES,
    PROFILE_DEFAULT,
    PROFILE_TYPES,
    REQUIRED_INPUTS,
    TASK_DETECT,
    ContractError,
    clean_text,
    layer_output,
    parse_labels,
    static_dim,
)

MAX_SIDE = 8192  # an input side above this is a hostile or broken file, not a camera's frame


@dataclass(frozen=True)
class DetectorInfo:
    """What the runtime needs to know about a loaded detector graph."""

    input_height: int
    input_width: int
    num_classes: int
    labels: tuple[str, ...]
    layers: tuple[LayerInfo, ...]  # the levels, finest first
    strides: tuple[int, ...]
    windows: tuple[int, ...]  # each level's gradient window side (the class branch's reach and back)
    max_boxes: int
    conf: float
    iou: float
    preprocessing: str
    precision: str
    model_name: str
    provides: frozenset[str] = frozenset({GRADIENTS, LAYERS})
    max_batch: int | None = None
    profile: str = PROFILE_DEFAULT

    @property
    def task(self) -> str:
        return TASK_DETECT

    @property
    def gradient_outputs(self) -> frozenset[str]:
        """Nothing is left out: the windows are small, and the maps the methods need come from them."""
        return frozenset()


def validate_detector(
    inputs: Mapping[str, Sequence[object]],
    outputs: Mapping[str, Sequence[object]],
    metadata: Mapping[str, str],
    source: str = "model",
    input_types: Mapping[str, str] | None = None,
) -> DetectorInfo:
    """Check a detector graph's names, shapes, types and metadata, and describe it."""
    hint = "re-export it with gradcam-export --onnx"
    missing_in = [n for n in REQUIRED_INPUTS if n not in inputs]
    missing_out = [n for n in DETECTOR_OUTPUTS if n not in outputs]
    if missing_in or missing_out:
        raise ContractError(f"{source} lacks {', '.join(missing_in + missing_out)}; {hint}")
    for name, wanted in PROFILE_TYPES[PROFILE_DEFAULT].items():
        got = (input_types or {}).get(name, wanted)
        if got != wanted:
            raise ContractError(f"{source}: input {name} is {got}, a detector graph takes {wanted}; {hint}")
    if metadata.get(META_CONTRACT) != DETECTOR_VERSION:
        raise ContractError(f"{source} has contract version {metadata.get(META_CONTRACT)!r}; this runtime reads "
                            f"{DETECTOR_VERSION} for detectors; {hint}")  # fmt: skip
    image = list(inputs[INPUT_IMAGE])
    height, width = (static_dim(d) for d in image[1:3]) if len(image) == 4 else (None, None)
    if len(image) != 4 or static_dim(image[3]) != 3 or height is None or width is None:
        raise ContractError(f"{source}: input {INPUT_IMAGE} must be [N,H,W,3] with a static H and W, got {image}")
    if max(height, width) > MAX_SIDE:
        raise ContractError(f"{source}: input {height}x{width} is larger than {MAX_SIDE} a side; {hint}")
    scores = list(outputs[OUT_SCORES])
    max_boxes = static_dim(scores[-1]) if len(scores) == 2 else None
    if max_boxes is None or max_boxes > MAX_BOXES or list(outputs[OUT_BOXES])[-1] != 4:
        raise ContractError(f"{source}: outputs {OUT_SCORES} {scores} and {OUT_BOXES} must be [N,D] and [N,D,4], "
                            f"D at most {MAX_BOXES}")  # fmt: skip
    names, strides = _json_list(metadata, META_LAYERS, source), _json_list(metadata, META_STRIDES, source)
    if not names or len(strides) != len(names) or not all(isinstance(s, int) and s > 0 for s in strides):
        raise ContractError(f"{source}: metadata {META_LAYERS} and {META_STRIDES} must list one name and one "
                            "positive stride per level")  # fmt: skip
    layers, windows = [], []
    for i, level in enumerate(names):
        name = str(level)
        missing = [layer_output(o, i) for o in LEVEL_OUTPUTS if layer_output(o, i) not in outputs]
        if missing:
            raise ContractError(f"{source}: level {name!r} lacks output(s) {', '.join(missing)}; {hint}")
        dims = [static_dim(d) for d in list(outputs[layer_output(OUT_ACTIVATIONS, i)])[1:]]
        window = [static_dim(d) for d in list(outputs[layer_output(OUT_GRADIENTS, i)])[2:]]
        if len(dims) != 3 or None in dims or len(window) != 3 or None in window:
            raise ContractError(f"{source}: level {name!r} must give [N,h,w,c] activations and [N,K,s,s,c] "
                                "gradients with static sizes")  # fmt: skip
        h, w, c = (int(d) for d in dims)  # type: ignore[arg-type]
        check_sizes(source, map_height=h, map_width=w, channels=c)
        check_sizes(source, map_height=int(window[0]), map_width=int(window[1]))  # type: ignore[arg-type]
        layers.append(LayerInfo(name, h, w, c, True))
        windows.append(int(window[0]))  # type: ignore[arg-type]
    num_classes = _int(metadata, META_NUM_CLASSES, source)
    check_sizes(source, classes=num_classes)
    return DetectorInfo(
        input_height=height, input_width=width, num_classes=num_classes,
        labels=parse_labels(metadata.get(META_LABELS), num_classes), layers=tuple(layers),
        strides=tuple(s for s in strides if isinstance(s, int)), windows=tuple(windows), max_boxes=max_boxes,
        conf=_float(metadata, META_CONF, source), iou=_float(metadata, META_IOU, source),
        preprocessing=metadata.get(META_PREPROCESSING, "unit"), precision=metadata.get(META_PRECISION, "fp32"),
        model_name=clean_text(metadata.get(META_MODEL_NAME, source)),
        max_batch=1 if metadata.get(META_BATCH) == "1" else None,
    )  # fmt: skip


def _json_list(metadata: Mapping[str, str], key: str, source: str) -> list[object]:
    try:
        value = json.loads(metadata.get(key, "[]"))
    except (ValueError, RecursionError) as exc:
        raise ContractError(f"{source}: metadata {key} is not a JSON list: {str(exc)[:80]}") from exc
    if not isinstance(value, list) or len(value) > 16:
        raise ContractError(f"{source}: metadata {key} must be a JSON list of at most 16 levels")
    return value


def _int(metadata: Mapping[str, str], key: str, source: str) -> int:
    text = metadata.get(key, "")
    if not text.isdigit() or not 0 < int(text) <= 100_000:
        raise ContractError(f"{source}: metadata {key} must be a whole number from 1 to 100000, got {text[:20]!r}")
    return int(text)


def _float(metadata: Mapping[str, str], key: str, source: str) -> float:
    try:
        value = float(metadata.get(key, ""))
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ContractError(f"{source}: metadata {key} must be a number from 0 to 1")
    return value
