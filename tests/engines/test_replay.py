"""CUDA graphs in the engine: the binding logic, on CPU buffers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from realtime import contract
from realtime.demo.models import demo_model_paths
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.engines.replay import Replays, fix_dims
from tests.helpers.video import random_frames


def test_a_cuda_graph_replay_is_the_plain_engine_on_cpu_buffers(tmp_path: Path) -> None:
    """The replay's fixed shapes and bindings, with CPU buffers: every frame is copied into the bound
    input (a stale buffer would repeat the first frame's answer), one replay per (batch, targets)."""
    import onnxruntime as ort

    path = demo_model_paths()["fair"]
    plain = LocalEngine(path, EngineOptions(providers="cpu", warmup=0))
    made: list[Any] = []

    def cpu_session(batch: int, targets: int):
        options = ort.SessionOptions()
        fix_dims(options, batch, targets)
        made.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
        return made[-1]

    replays = Replays(cpu_session, plain._every_output, device="cpu")
    wanted = [contract.OUT_LOGITS, contract.OUT_CLASSES, contract.OUT_CAM, contract.OUT_WEIGHTS]
    for batch, k in ((1, 1), (3, 2), (1, 1), (3, 2)):
        for seed in range(3):
            frames = random_frames((224, 224), batch, seed=10 * batch + seed)
            targets = np.full((batch, k), -1, np.int64)
            got = replays.run({contract.INPUT_IMAGE: frames, contract.INPUT_TARGETS: targets}, wanted)
            want = plain.run(frames, targets)
            assert got is not None
            assert np.array_equal(got[contract.OUT_CLASSES], want.classes)
            assert np.abs(got[contract.OUT_CAM] - want.cam).max() <= 1e-5
            assert np.abs(got[contract.OUT_LOGITS] - want.logits).max() <= 1e-4
    assert replays.captured == ((1, 1), (3, 2)) and len(made) == 2
    assert [i.shape for i in made[1].get_inputs()] == [[3, 224, 224, 3], [3, 2]]  # every dim fixed


def test_a_failed_capture_says_one_line_and_runs_without(tmp_path: Path) -> None:
    lines: list[str] = []

    def refuses(batch: int, targets: int):
        raise RuntimeError("CUDA graph capture is not supported for this graph\nsecond line")

    plain = LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0))
    replays = Replays(refuses, plain._every_output, device="cpu", say=lines.append)
    feeds = {contract.INPUT_IMAGE: random_frames((224, 224), 1), contract.INPUT_TARGETS: np.full((1, 1), -1, np.int64)}
    assert replays.run(feeds, [contract.OUT_CAM]) is None and replays.run(feeds, [contract.OUT_CAM]) is None
    assert lines == ["CUDA graph for batch 1 x 1 targets failed (CUDA graph capture is not supported for this "
                     "graph); running it without"]  # fmt: skip
    assert replays.captured == ()
    notice = LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0, cuda_graph=True)).notice
    assert "--cuda-graph needs the CUDA provider" in notice
