"""The detector's road through the exporter: its graph built, checked and written (pipeline.export calls it).

The check before the write: every graph passes onnx.checker and TensorRT's operator list, and the
class logits each window recomputes equal the full graph's at the explained anchors (on a few frames:
the demo's scenes and seeded noise), which catches a window that reads the wrong cells or pads wrongly.
"""

from __future__ import annotations

import ast
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from realtime import contract
from realtime.export.checks import portable
from realtime.export.checks.selfcheck import SelfCheckError
from realtime.export.config import ExportConfig, ExportError, ExportResult, preprocess_spec, read_labels
from realtime.export.detect.graph import Settings, build
from realtime.export.detect.head import DetectHead, DetectorError
from realtime.export.graph import passes
from realtime.export.graph.session import cpu_session
from realtime.export.graph.writing import save_checked
from realtime.export.importers import ForwardGraph
from realtime.files import folder_for
from realtime.progress import Progress

AGREEMENT = 1e-4  # window logits against the full graph's, of the largest logit's magnitude
MAX_LABELS_TEXT = 1 << 20  # a `names` entry longer than this is not a list of class names


@dataclass(frozen=True)
class DetectorCheck:
    """What the self-check compared: explained boxes, and the largest relative difference of their logits."""

    boxes: int
    difference: float

    def describe(self) -> str:
        if not self.boxes:
            return "passed (no box above the threshold on the check frames: only the graph's form was checked)"
        return f"passed on {self.boxes} boxes (window logits within {self.difference:.1e} of the graph's)"


def default_detector_output(config: ExportConfig, name: str) -> Path:
    return Path("models") / f"{name}_gradcam_detector.onnx"


def labels_for(config: ExportConfig, names_entry: str, num_classes: int) -> list[str]:
    """--labels, else the class names Ultralytics writes into the file's metadata (`names`, a Python dict's
    text, read as a literal, never run), else class_i."""
    if config.labels is not None:
        labels = read_labels(config.labels)
        if len(labels) != num_classes:
            raise ExportError(f"--labels {config.labels} has {len(labels)} names; the detector has {num_classes}")
        return labels
    try:
        names = ast.literal_eval(names_entry) if names_entry and len(names_entry) < MAX_LABELS_TEXT else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        names = None
    if isinstance(names, dict) and sorted(names) == list(range(num_classes)):
        return [contract.clean_text(str(names[i])) for i in range(num_classes)]
    return [f"class_{i}" for i in range(num_classes)]


def export_detector(forward: ForwardGraph, config: ExportConfig, progress: Progress, start: float) -> ExportResult:
    """Build the detector graph of `forward` (rewritten in place), check it, write it."""
    model = forward.model
    output = config.output or default_detector_output(config, forward.name)
    prep_name, prep = preprocess_spec(config, default="unit")
    with progress.step("building the detector's Grad-CAM graph (kept boxes, each box's window)", "build"):
        names_entry = next((p.value for p in model.metadata_props if p.key == "names"), "")
        meta = {
            contract.META_CONTRACT: contract.DETECTOR_VERSION, contract.META_TASK: contract.TASK_DETECT,
            contract.META_PREPROCESSING: prep_name, contract.META_MODEL_NAME: forward.name,
            contract.META_PRECISION: "fp32", contract.META_BATCH: "1" if forward.static_batch else "dynamic",
            contract.META_MAX_BOXES: str(config.max_boxes), contract.META_CONF: repr(config.conf),
            contract.META_IOU: repr(config.iou), contract.META_FIT: "letterbox",
        }  # fmt: skip
        try:
            head = build(model, forward.input_name, Settings(config.conf, config.iou, config.max_boxes, prep, meta))
        except DetectorError as exc:
            raise ExportError(str(exc)) from exc
        labels = labels_for(config, names_entry, head.num_classes)
        for key, value in {contract.META_LABELS: json.dumps(labels),
                           contract.META_NUM_CLASSES: str(head.num_classes)}.items():  # fmt: skip
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        passes.finish(model)
    size = (int(head.levels[0].height * head.levels[0].stride), int(head.levels[0].width * head.levels[0].stride))

    def check(path: Path) -> DetectorCheck | None:
        with progress.step("checking the graph: onnx.checker, TensorRT's operators", "portable"):
            try:
                portable.check_portable(path, model=model)
            except portable.GraphCheckError as exc:
                raise SelfCheckError(str(exc)) from exc
        if not config.self_check:
            return None
        with progress.step("self-check: each window's logits against the full graph's", "self-check"):
            return _windows_agree(model, head, size)

    with folder_for(output):
        report = save_checked(model, output, check)
    seconds = time.perf_counter() - start
    levels = ", ".join(f"{level.height}x{level.width}/{level.stride}" for level in head.levels)
    return ExportResult(output, seconds, report, head.num_classes, f"{len(head.levels)} head inputs ({levels})",
                        stages=tuple(progress.times.items()), static_batch=forward.static_batch)  # fmt: skip


def _check_frames(size: tuple[int, int]) -> np.ndarray:
    """Two demo scenes letterboxed as the runtime does, and seeded noise."""
    from realtime.sources import scenes
    from realtime.sources.fitting import letterbox

    frames = [letterbox(scene.image, size)[0] for scene in scenes.dataset(2, seed=77, biased=False)]
    noise = np.random.default_rng(5).integers(0, 256, (*size, 3), dtype=np.uint8)
    return np.stack([*frames, noise])


def _windows_agree(model: onnx.ModelProto, head: DetectHead, size: tuple[int, int]) -> DetectorCheck:
    """box_logits (each window's recomputed logit) against the graph's own logits at the explained anchors."""
    wanted = [contract.OUT_EXPLAINED, contract.OUT_ANCHORS, contract.OUT_BOX_LOGITS, contract.OUT_BOX_CLASSES]
    session = cpu_session(model, outputs=[*wanted, head.logits])
    names = [o.name for o in session.get_outputs()]
    boxes, largest = 0, 0.0
    for frame in _check_frames(size):
        targets = np.full((1, 4), -1, np.int64)
        values = dict(zip(names, session.run(names, {contract.INPUT_IMAGE: frame[None],
                                                     contract.INPUT_TARGETS: targets}), strict=True))  # fmt: skip
        for k in np.flatnonzero(values[contract.OUT_EXPLAINED][0] >= 0):
            level, row, column = (int(v) for v in values[contract.OUT_ANCHORS][0, k])
            found = head.levels[level]
            anchor = found.offset + row * found.width + column
            box_class = int(values[contract.OUT_BOX_CLASSES][0, values[contract.OUT_EXPLAINED][0, k]])
            want = float(values[head.logits][0, box_class, anchor])
            got = float(values[contract.OUT_BOX_LOGITS][0, k])
            difference = abs(got - want) / max(1.0, abs(want))
            if difference > AGREEMENT:
                raise SelfCheckError(
                    f"box {k} on level {level}: its window gives the logit {got:.6g}, the graph {want:.6g}; the "
                    "window copy of the class branch does not read the cells the graph does"
                )
            boxes, largest = boxes + 1, max(largest, difference)
    return DetectorCheck(boxes, largest)
