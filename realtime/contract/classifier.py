"""A classifier's Grad-CAM graph, as the runtime reads it: names, shapes and input types checked."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from realtime.contract.names import (
    GRADIENTS,
    GRADIENTS_FULL,
    GRADIENTS_POOLED,
    INPUT_IMAGE,
    LAYER_OUTPUTS,
    LAYERS,
    META_BATCH,
    META_CONTRACT,
    META_GRADIENTS,
    META_LABELS,
    META_LAYER,
    META_LAYERS,
    META_MODEL_NAME,
    META_PRECISION,
    META_PREPROCESSING,
    META_PROFILE,
    OUT_ACTIVATIONS,
    OUT_GRADIENTS,
    OUT_GUIDED,
    OUT_LOGITS,
    OUT_SALIENCY,
    PROFILE_DEFAULT,
    PROFILE_TYPES,
    READABLE_VERSIONS,
    REQUIRED_INPUTS,
    REQUIRED_OUTPUTS,
    TASK_CLASSIFY,
    ContractError,
    clean_text,
    layer_output,
    parse_labels,
    static_dim,
)


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
    def task(self) -> str:
        return TASK_CLASSIFY

    @property
    def gradient_outputs(self) -> frozenset[str]:
        """The outputs a call that needs no gradients leaves out (gradients of every layer, the input's)."""
        every = {layer_output(OUT_GRADIENTS, i) for i in range(len(self.layers))}
        return frozenset({OUT_SALIENCY, OUT_GUIDED} | every)


SIZE_LIMITS = {"height": 8192, "width": 8192, "classes": 100_000, "map_height": 8192, "map_width": 8192,
               "channels": 65_536}  # fmt: skip  # far past any real model; a declared 60000x60000 is not one


def check_sizes(source: str, **sizes: int) -> None:
    """Refuse sizes no real model has before anything is allocated from them (a hostile file or server)."""
    for name, value in sizes.items():
        if not 1 <= value <= SIZE_LIMITS[name]:
            raise ContractError(f"{source}: its {name.replace('_', ' ')} is {value}, outside 1..{SIZE_LIMITS[name]}; "
                                "this is not a graph gradcam-export wrote")  # fmt: skip


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
    if len(image) != 4 or static_dim(image[3]) != 3:
        raise ContractError(f"{source}: input {INPUT_IMAGE} must be [N,H,W,3] BGR, got {image}")
    height, width = static_dim(image[1]), static_dim(image[2])
    if height is None or width is None:
        raise ContractError(f"{source}: input {INPUT_IMAGE} needs a static height and width, got {image}")

    logits = list(outputs[OUT_LOGITS])
    activations = list(outputs[OUT_ACTIVATIONS])
    num_classes = static_dim(logits[-1]) if logits else None
    if len(logits) != 2 or num_classes is None:
        raise ContractError(f"{source}: output {OUT_LOGITS} must be [N,C], got {logits}")
    if len(activations) != 4 or any(static_dim(d) is None for d in activations[1:]):
        raise ContractError(f"{source}: output {OUT_ACTIVATIONS} must be [N,h,w,k], got {activations}")
    map_h, map_w, channels = (int(d) for d in activations[1:])  # type: ignore[call-overload]
    check_sizes(source, height=height, width=width, classes=num_classes, map_height=map_h, map_width=map_w,
                channels=channels)  # fmt: skip
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
        layer=clean_text(metadata.get(META_LAYER, "?")),
        preprocessing=metadata.get(META_PREPROCESSING, "caffe"),
        gradients=metadata.get(META_GRADIENTS, GRADIENTS_FULL if OUT_GRADIENTS in outputs else GRADIENTS_POOLED),
        precision=metadata.get(META_PRECISION, "fp32"),
        model_name=clean_text(metadata.get(META_MODEL_NAME, source)),
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
        if len(dims) != 4 or any(static_dim(d) is None for d in dims[1:]):
            raise ContractError(f"{source}: output {layer_output(OUT_ACTIVATIONS, i)} must be [N,h,w,k], got {dims}")
        h, w, c = (int(d) for d in dims[1:])  # type: ignore[call-overload]
        layers.append(LayerInfo(name, h, w, c, layer_output(OUT_GRADIENTS, i) in outputs))
    return tuple(layers)


