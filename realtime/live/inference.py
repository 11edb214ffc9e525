"""One step of inference: the newest frame of every source through every model, one batch per model.

It runs on the loop's inference thread; nothing here draws or keeps state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from realtime.engines.protocol import Engine
from realtime.engines.result import CamResult
from realtime.maps import methods
from realtime.maps.query import Query, class_id_in, targets_for
from realtime.sources.fitting import Region, fit, model_region
from realtime.sources.frame import Frame


@dataclass(frozen=True)
class Inference:
    """The newest frame of each source and what every model said about them, under one query."""

    frames: tuple[Frame | None, ...]
    indices: tuple[int | None, ...]  # each source's image in the batch (None: it had no frame)
    results: tuple[CamResult, ...]  # one per model
    class_ids: tuple[int | None, ...]  # the query's class in each model's labels
    regions: tuple[tuple[Region | None, ...], ...]  # [model][source]: where in the frame the model looked
    query: Query
    resize_s: float = 0.0
    resize_cpu_s: float = 0.0


def infer(engines: Sequence[Engine], frames: Sequence[Frame | None], query: Query, fit_mode: str) -> Inference:
    """One call per model, the sources as one batch (runs on the inference thread)."""
    present = [f for f in frames if f is not None]
    indices, position = [], 0
    for frame in frames:
        indices.append(None if frame is None else position)
        position += frame is not None
    need_gradients = methods.method(query.method).needs_gradients
    batches: dict[tuple[int, int], np.ndarray] = {}
    results, class_ids, regions = [], [], []
    resize_s = resize_cpu = 0.0
    for engine in engines:
        size = (engine.info.input_height, engine.info.input_width)
        if size not in batches:
            t0, c0 = time.perf_counter(), time.thread_time()
            batches[size] = np.stack([fit(f.image, size, fit_mode) for f in present])
            resize_s += time.perf_counter() - t0
            resize_cpu += time.thread_time() - c0
        regions.append(tuple(None if f is None else model_region(f.image.shape, size, fit_mode) for f in frames))
        class_id = class_id_in(query, engine.info.labels, first=engine is engines[0])
        class_ids.append(class_id)
        targets = [targets_for(query, class_id)] * len(present)
        results.append(engine.run(batches[size], targets, need_gradients=need_gradients))
    return Inference(
        tuple(frames), tuple(indices), tuple(results), tuple(class_ids), tuple(regions), query, resize_s, resize_cpu
    )
