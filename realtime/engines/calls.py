"""What every engine does around its call: the inputs checked, the outputs asked for, the result built.

An engine supplies only `call(images, targets, wanted) -> {output name: array}`; `run_batch` does the
rest the same way for a local session and a server, so both check and answer alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from realtime import contract
from realtime.contract import DetectorInfo, ModelInfo
from realtime.engines.result import CamResult, LayerMaps, Result

Call = Callable[[np.ndarray, np.ndarray, list[str]], dict[str, np.ndarray]]


class BadResultError(contract.ContractError):
    """An answer that breaks the contract (a missing output, a wrong shape or type, NaN or Inf): the live view
    shows a "bad result" panel, the API raises it; nothing draws from it."""


def checked_values(
    values: dict[str, np.ndarray], wanted: Sequence[str], images: int, targets: int, source: object
) -> dict[str, np.ndarray]:
    """`values` when every wanted output is there, batch-first, numeric and finite: a local graph and a server
    (whatever it sends) are held to the same contract before anything reads or draws their numbers."""
    for name in wanted:
        value = values.get(name)
        if not isinstance(value, np.ndarray):
            raise BadResultError(f"{source}: bad result: output {name!r} is missing; re-export or redeploy the graph")
        if value.ndim == 0 or value.shape[0] != images:
            raise BadResultError(f"{source}: bad result: {name!r} has shape {value.shape} for {images} image(s)")
        if value.dtype.kind not in "fiu":
            raise BadResultError(f"{source}: bad result: {name!r} is {value.dtype}, not numbers")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise BadResultError(f"{source}: bad result: {name!r} holds NaN or Inf (an fp16 overflow?); "
                                 "try the fp32 graph")  # fmt: skip
        if name in TARGETED and (value.ndim < 2 or value.shape[1] != targets):
            raise BadResultError(f"{source}: bad result: {name!r} has shape {value.shape} for {targets} target(s)")
    return values


TARGETED = frozenset({contract.OUT_CLASSES, contract.OUT_WEIGHTS, contract.OUT_CAM, contract.OUT_EXPLAINED,
                      contract.OUT_BOX_LOGITS, contract.OUT_ANCHORS, contract.OUT_MAP})  # fmt: skip  # [N, K, ...]


def contract_feeds(profile: str, images: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's inputs for uint8 frames and int64 targets, in its profile's types: the trt8 profile
    takes the image as float32 (the cast TensorRT 8 may not parse, done here) and int32 targets."""
    if profile == contract.PROFILE_TRT8:
        return {contract.INPUT_IMAGE: images.astype(np.float32), contract.INPUT_TARGETS: targets.astype(np.int32)}
    return {contract.INPUT_IMAGE: images, contract.INPUT_TARGETS: targets}


def check_targets(info: ModelInfo, targets: np.ndarray) -> None:
    bad = targets[(targets < -1) | (targets >= info.num_classes)]
    if bad.size:
        raise ValueError(f"class id {int(bad[0])} is out of range 0..{info.num_classes - 1} (or -1 for ranked)")
    if targets.shape[1] > info.num_classes:
        raise ValueError(f"top-k {targets.shape[1]} exceeds the model's {info.num_classes} classes")
    if targets.shape[1] > contract.MAX_TARGETS:
        raise ValueError(f"{targets.shape[1]} targets per image; the graph explains at most {contract.MAX_TARGETS}")


def checked_images(info: ModelInfo | DetectorInfo, images: np.ndarray) -> np.ndarray:
    """Contiguous uint8 images of the model's size [N,H,W,3], or a ValueError that says which size."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    expected = (info.input_height, info.input_width, 3)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"images must be [N,{expected[0]},{expected[1]},3] uint8, got {images.shape}")
    return images


def checked_batch(
    info: ModelInfo, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous uint8 images of the model's size, and int64 targets with one row per image (a single
    row is used for every image)."""
    images = checked_images(info, images)
    target_array = target_rows(targets, len(images))
    check_targets(info, target_array)
    return images, target_array


def target_rows(targets: Sequence[Sequence[int]] | np.ndarray, images: int) -> np.ndarray:
    """Contiguous int64 targets [images, K]: a single row (or a flat list) is used for every image."""
    rows = np.asarray(targets, dtype=np.int64)
    if rows.ndim == 1:
        rows = rows[None]
    if rows.ndim != 2 or rows.shape[0] not in (1, images):
        raise ValueError(f"targets must be one row or one row per image ({images}), got shape {rows.shape}")
    return np.ascontiguousarray(np.broadcast_to(rows, (images, rows.shape[1])))


def call_per_batch(
    max_batch: int | None, call: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]], images: np.ndarray,
    rows: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """One call for the batch, or, for a graph with its batch baked in (max_batch 1), one per image joined."""
    if max_batch != 1 or len(images) == 1:
        return call(images, rows)
    calls = [call(images[i : i + 1], rows[i : i + 1]) for i in range(len(images))]
    return {name: np.concatenate([one[name] for one in calls]) for name in calls[0]}


def run_batch(
    info: ModelInfo, outputs: Sequence[str], call: Call, images: np.ndarray,
    targets: Sequence[Sequence[int]] | np.ndarray, need_gradients: bool, provider: str, source: Path,
) -> CamResult:  # fmt: skip
    """Check the batch, make the call (one per image for a graph with its batch baked in), build the result."""
    images, target_array = checked_batch(info, images, targets)
    wanted = [n for n in outputs if need_gradients or n not in info.gradient_outputs]
    start = time.perf_counter()
    values = call_per_batch(info.max_batch, lambda some, rows: call(some, rows, wanted), images, target_array)
    values = checked_values(values, wanted, len(images), target_array.shape[1], source)
    if values[contract.OUT_LOGITS].shape[1] != info.num_classes:
        raise BadResultError(f"{source}: bad result: logits {values[contract.OUT_LOGITS].shape} for "
                             f"{info.num_classes} classes")  # fmt: skip
    return result_from(values, info, time.perf_counter() - start, provider, source)


def result_from(
    values: dict[str, np.ndarray], info: ModelInfo, seconds: float, provider: str, source: Path
) -> CamResult:
    """A CamResult from the graph's outputs by name; class ids outside the labels are a ContractError."""
    more = tuple(
        LayerMaps(
            values[contract.layer_output(contract.OUT_ACTIVATIONS, i)],
            values[contract.layer_output(contract.OUT_WEIGHTS, i)],
            values[contract.layer_output(contract.OUT_CAM, i)],
            values.get(contract.layer_output(contract.OUT_GRADIENTS, i)),
        )
        for i in range(1, len(info.layers))
    )
    classes = values[contract.OUT_CLASSES].astype(np.int64, copy=False)  # the trt8 profile gives int32
    wrong = classes[(classes < 0) | (classes >= info.num_classes)]
    if wrong.size:  # a graph that is not this contract's, or an edited one: its ids index the labels
        raise contract.ContractError(
            f"{source}: its classes output holds {int(wrong[0])}, outside 0..{info.num_classes - 1}; "
            "re-export the graph with gradcam-export"
        )
    return CamResult(
        logits=values[contract.OUT_LOGITS],
        probabilities=values[contract.OUT_PROBABILITIES],
        classes=classes,
        activations=values.get(contract.OUT_ACTIVATIONS),
        weights=values[contract.OUT_WEIGHTS],
        cam=values[contract.OUT_CAM],
        gradients=values.get(contract.OUT_GRADIENTS),
        seconds=seconds,
        provider=provider,
        labels=info.labels,
        more_layers=more,
        saliency=values.get(contract.OUT_SALIENCY),
        guided=values.get(contract.OUT_GUIDED),
    )


def lost_result(info: ModelInfo, images: int, targets: int, provider: str, why: str) -> CamResult:
    """Zeros in the contract's shapes, marked lost: every method and drawing goes on without a model."""
    layers = [(layer.map_height, layer.map_width, layer.channels) for layer in info.layers] or [
        (info.map_height, info.map_width, info.channels)
    ]
    n, k = images, targets
    maps = [
        LayerMaps(np.zeros((n, h, w, c), np.float32), np.zeros((n, k, c), np.float32),
                  np.zeros((n, k, h, w), np.float32), np.zeros((n, k, h, w, c), np.float32))
        for h, w, c in layers
    ]  # fmt: skip
    first = maps[0]
    logits = np.zeros((n, info.num_classes), np.float32)
    return CamResult(
        logits=logits, probabilities=logits + 1.0 / info.num_classes, classes=np.zeros((n, k), np.int64),
        activations=first.activations, weights=first.weights, cam=first.cam, gradients=first.gradients,
        seconds=0.0, provider=provider, labels=info.labels, more_layers=tuple(maps[1:]), lost=why,
    )  # fmt: skip


def warm_up(run: Callable[[np.ndarray, list[list[int]]], Result], info: ModelInfo | DetectorInfo, times: int) -> float:
    """Run a blank frame `times` times; the last call's ms, what a frame will cost (0.0 for none)."""
    ms = 0.0
    for _ in range(times):
        blank = np.zeros((1, info.input_height, info.input_width, 3), np.uint8)
        start = time.perf_counter()
        try:
            ms = float(run(blank, [[-1]]).seconds) * 1000.0
        except BadResultError:  # a graph that overflows on a blank frame: timed all the same; frames will say so
            ms = (time.perf_counter() - start) * 1000.0
    return ms
