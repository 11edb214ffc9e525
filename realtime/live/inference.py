"""One step of inference: the newest frame of every source through every model, one batch per model.

It runs on the loop's inference thread; nothing here draws, and the only state is COMPLAINTS, which keeps a
bad result's line to one a while.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from realtime.contract import TASK_DETECT, DetectorInfo
from realtime.engines.calls import BadResultError, lost_result
from realtime.engines.detector import lost_detection
from realtime.engines.protocol import Engine
from realtime.engines.result import Result
from realtime.maps import methods
from realtime.maps.query import Query, box_targets, class_id_in, targets_for
from realtime.quiet import Throttle
from realtime.sources.fitting import LETTERBOX, Placement, placed
from realtime.sources.frame import Frame


@dataclass(frozen=True)
class Inference:
    """The newest frame of each source and what every model said about them, under one query."""

    frames: tuple[Frame | None, ...]
    indices: tuple[int | None, ...]  # each source's image in the batch (None: it had no frame)
    results: tuple[Result, ...]  # one per model
    class_ids: tuple[int | None, ...]  # the query's class in each model's labels
    placements: tuple[tuple[Placement | None, ...], ...]  # [model][source]: how each frame was fitted to it
    query: Query
    resize_s: float = 0.0
    resize_cpu_s: float = 0.0


COMPLAINTS = Throttle(lambda line: print(f"gradcam-live: {line}", file=sys.stderr))


def _answer(engine: Engine, batch: np.ndarray, row: list[int], images: int, need_gradients: bool) -> Result:
    """The engine's result, or, for an answer that breaks the contract (NaN from an fp16 overflow, a server's
    missing output), a placeholder marked "bad result": the panel says so, one line a while says why."""
    try:
        return engine.run(batch, [row] * images, need_gradients=need_gradients)
    except BadResultError as exc:
        COMPLAINTS(f"bad result:{engine.path}", str(exc))
        info = engine.info
        if isinstance(info, DetectorInfo):
            return lost_detection(info, images, len(row), engine.provider, "bad result")
        return lost_result(info, images, len(row), engine.provider, "bad result")


def infer(engines: Sequence[Engine], frames: Sequence[Frame | None], query: Query, fit_mode: str) -> Inference:
    """One call per model, the sources as one batch (runs on the inference thread)."""
    present = [f for f in frames if f is not None]
    indices, position = [], 0
    for frame in frames:
        indices.append(None if frame is None else position)
        position += frame is not None
    need_gradients = methods.method(query.method).needs_gradients
    batches: dict[tuple[int, int, str], tuple[np.ndarray, tuple[Placement | None, ...]]] = {}
    results, class_ids, placements = [], [], []
    resize_s = resize_cpu = 0.0
    for engine in engines:
        info = engine.info
        mode = LETTERBOX if info.task == TASK_DETECT else fit_mode  # a detector takes frames as it was trained
        key = (info.input_height, info.input_width, mode)
        if key not in batches:
            t0, c0 = time.perf_counter(), time.thread_time()
            fitted = [placed(f.image, key[:2], mode) for f in present]
            where = iter(p for _, p in fitted)
            batches[key] = (
                np.stack([image for image, _ in fitted]),
                tuple(None if f is None else next(where) for f in frames),
            )
            resize_s += time.perf_counter() - t0
            resize_cpu += time.thread_time() - c0
        batch, placement = batches[key]
        placements.append(placement)
        class_id = class_id_in(query, info.labels, first=engine is engines[0])
        class_ids.append(class_id)
        if isinstance(info, DetectorInfo):
            row = box_targets(query, class_id, info.max_boxes)
        else:
            row = targets_for(query, class_id)
        results.append(_answer(engine, batch, row, len(present), need_gradients))
    return Inference(
        tuple(frames), tuple(indices), tuple(results), tuple(class_ids), tuple(placements), query, resize_s, resize_cpu
    )
