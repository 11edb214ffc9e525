"""A detector's Grad-CAM graph in this process, on onnxruntime (an engines.Engine returning DetectResult).

Frames come letterboxed to the model's size (sources.fitting.letterbox); the result's boxes are in the
model's pixels, and Letterbox.to_frame maps them back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from realtime import contract
from realtime.contract import ContractError, DetectorInfo
from realtime.engines.calls import call_per_batch, checked_images, checked_values, target_rows, warm_up
from realtime.engines.graph_file import OpenedGraph, open_graph
from realtime.engines.providers import EngineOptions
from realtime.engines.result import DetectResult, LevelMaps


class DetectorEngine:
    """A loaded, validated and warmed-up detector graph."""

    def __init__(
        self, model_path: str | Path, options: EngineOptions | None = None, opened: OpenedGraph | None = None
    ) -> None:
        self.options = options or EngineOptions()
        opened = opened or open_graph(model_path, self.options)
        self.session, self.path, self.provider = opened.session, opened.path, opened.provider
        self.notice, self.cpu_warning = opened.notice, opened.cpu_warning
        inputs, outputs, types = opened.shapes()
        self.info: DetectorInfo = contract.validate_detector(inputs, outputs, opened.metadata, str(self.path), types)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.warmup_ms = warm_up(self.run, self.info, self.options.warmup)

    @property
    def provides(self) -> frozenset[str]:
        return self.info.provides

    def run(
        self, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray, need_gradients: bool = True
    ) -> DetectResult:
        """One call for a batch of letterboxed BGR uint8 images; target column k: the k-th best box (-1) or
        the k-th best of a class."""
        images = checked_images(self.info, images)
        rows = target_rows(targets, len(images))
        bad = rows[(rows < -1) | (rows >= self.info.num_classes)]
        if bad.size or not 1 <= rows.shape[1] <= self.info.max_boxes:
            raise ValueError(f"targets must be [N, 1..{self.info.max_boxes}] of -1 or class ids below "
                             f"{self.info.num_classes}, got {rows.shape} {bad[:1]}")  # fmt: skip
        start = time.perf_counter()
        values = call_per_batch(self.info.max_batch, self._call, images, rows)
        values = checked_values(values, self.output_names, len(images), rows.shape[1], self.path)
        return result_from(values, self.info, time.perf_counter() - start, self.provider)

    def _call(self, images: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {contract.INPUT_IMAGE: images, contract.INPUT_TARGETS: targets}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))


def result_from(values: dict[str, np.ndarray], info: DetectorInfo, seconds: float, provider: str) -> DetectResult:
    """A DetectResult from the graph's outputs; classes outside the labels are a ContractError."""
    classes = values[contract.OUT_BOX_CLASSES].astype(np.int64, copy=False)
    if classes.size and (classes.max() >= info.num_classes or classes.min() < -1):
        raise ContractError(f"the detector's box classes hold {int(classes.max())}, outside its {info.num_classes} "
                            "classes; re-export the graph")  # fmt: skip
    levels = tuple(
        LevelMaps(*(values[contract.layer_output(name, i)] for name in (
            contract.OUT_ACTIVATIONS, contract.OUT_WEIGHTS, contract.OUT_CAM, contract.OUT_LAYERCAM,
            contract.OUT_GRADIENTS)))
        for i in range(len(info.layers))
    )  # fmt: skip
    return DetectResult(
        boxes=values[contract.OUT_BOXES], scores=values[contract.OUT_SCORES], classes=classes,
        count=values[contract.OUT_COUNT], explained=values[contract.OUT_EXPLAINED],
        box_logits=values[contract.OUT_BOX_LOGITS], anchors=values[contract.OUT_ANCHORS], levels=levels,
        fused=values[contract.OUT_MAP], seconds=seconds, provider=provider, labels=info.labels,
    )  # fmt: skip


def lost_detection(info: DetectorInfo, images: int, targets: int, provider: str, why: str) -> DetectResult:
    """No boxes, marked lost (`why`): the panels show why instead of boxes and maps."""
    n, k = images, targets
    levels = tuple(
        LevelMaps(np.zeros((n, layer.map_height, layer.map_width, layer.channels), np.float32),
                  np.zeros((n, k, layer.channels), np.float32),
                  np.zeros((n, k, layer.map_height, layer.map_width), np.float32),
                  np.zeros((n, k, layer.map_height, layer.map_width), np.float32),
                  np.zeros((n, k, window, window, layer.channels), np.float32))
        for layer, window in zip(info.layers, info.windows, strict=True)
    )  # fmt: skip
    finest = info.layers[0]
    return DetectResult(
        boxes=np.zeros((n, info.max_boxes, 4), np.float32), scores=np.zeros((n, info.max_boxes), np.float32),
        classes=np.full((n, info.max_boxes), -1, np.int64), count=np.zeros(n, np.int64),
        explained=np.full((n, k), -1, np.int64), box_logits=np.zeros((n, k), np.float32),
        anchors=np.full((n, k, 3), -1, np.int64), levels=levels,
        fused=np.zeros((n, k, finest.map_height, finest.map_width), np.float32), seconds=0.0, provider=provider,
        labels=info.labels, lost=why,
    )  # fmt: skip
