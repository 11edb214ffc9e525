"""CUDA graphs in the engine: fixed-shape copies of the graph, bound once and replayed each frame.

At batch 1 a GPU spends most of a Grad-CAM call launching kernels (an H100 ran ResNet50's full
graph in 1.63 ms, 1.02 ms as a CUDA graph). onnxruntime captures a CUDA graph only when every
shape is fixed and the inputs and outputs live at the same device addresses on every run. So for
each (batch, targets per image) in use this keeps one session of a copy of the graph with those
dims written in, with device buffers bound once; a frame is copied into the bound input, the
graph replayed, and only the wanted outputs copied back.

Nothing here needs a GPU to be tested: on the CPU the same binding runs with CPU buffers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from realtime import contract
from realtime.engines.providers import EngineOptions, cpu_session_options, cuda_graph_provider

SessionFactory = Callable[[int, int], Any]  # (batch, targets per image) -> a session with those dims fixed
PlainRun = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]  # every output of the plain session


def fix_dims(options: Any, batch: int, targets: int) -> None:
    """Write the batch and the targets per image into onnxruntime's session options (the contract names
    those free dims N and K): every shape in the graph is then fixed, as CUDA graphs need."""
    options.add_free_dimension_override_by_name(contract.DIM_BATCH, batch)
    options.add_free_dimension_override_by_name(contract.DIM_TARGETS, targets)


def cuda_graph_session(path: str | Path, options: EngineOptions) -> SessionFactory:
    """Sessions of `path` on the CUDA provider alone (a node left on the CPU breaks the capture), CUDA
    graphs on, one per (batch, targets)."""

    def make(batch: int, targets: int) -> Any:
        import onnxruntime as ort

        session_options = cpu_session_options(options.threads)
        fix_dims(session_options, batch, targets)
        return ort.InferenceSession(str(path), session_options, providers=[cuda_graph_provider(options)])

    return make


@dataclass
class BoundReplay:
    """One fixed-shape session with its inputs and outputs bound to buffers that never move."""

    session: Any
    binding: Any
    inputs: dict[str, Any]  # name -> OrtValue the frames are copied into
    outputs: dict[str, Any]  # name -> OrtValue the graph writes

    def run(self, feeds: Mapping[str, np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray]:
        for name, value in feeds.items():
            self.inputs[name].update_inplace(np.ascontiguousarray(value))
        self.session.run_with_iobinding(self.binding)
        return {name: self.outputs[name].numpy() for name in wanted}


def bind(session: Any, feeds: Mapping[str, np.ndarray], device: str, outputs: Mapping[str, np.ndarray]) -> BoundReplay:
    """Device buffers shaped like `outputs` (one plain run's), bound once; the first bound run is where
    onnxruntime captures the CUDA graph, so the capture records these buffers and later runs replay it."""
    import onnxruntime as ort

    binding = session.io_binding()
    inputs = {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), device, 0) for name, v in feeds.items()}
    for name, value in inputs.items():
        binding.bind_ortvalue_input(name, value)
    made = {n: ort.OrtValue.ortvalue_from_shape_and_type(v.shape, v.dtype, device, 0) for n, v in outputs.items()}
    for name, value in made.items():
        binding.bind_ortvalue_output(name, value)
    replay = BoundReplay(session, binding, inputs, made)
    replay.run(feeds, [])  # the capture, on the bound buffers
    return replay


@dataclass
class Replays:
    """The engine's fixed-shape replays, one per (batch, targets per image), made when first needed.

    A capture that fails is said in one line, and that shape runs without a CUDA graph from then on.
    """

    make_session: SessionFactory
    plain: PlainRun  # the engine's own session: the output shapes a replay's buffers need
    device: str = "cuda"
    say: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))
    _bound: dict[tuple[int, int], BoundReplay | None] = field(default_factory=dict)

    def run(self, feeds: Mapping[str, np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The wanted outputs, or None where this shape has no replay (the caller runs the plain session)."""
        targets = feeds[contract.INPUT_TARGETS]
        key = (int(targets.shape[0]), int(targets.shape[1]))
        if key not in self._bound:
            self._bound[key] = self._capture(key, feeds)
        replay = self._bound[key]
        return None if replay is None else replay.run(feeds, wanted)

    @property
    def captured(self) -> tuple[tuple[int, int], ...]:
        """The (batch, targets) shapes that run as replays."""
        return tuple(key for key, replay in self._bound.items() if replay is not None)

    def _capture(self, key: tuple[int, int], feeds: Mapping[str, np.ndarray]) -> BoundReplay | None:
        try:
            return bind(self.make_session(*key), feeds, self.device, self.plain(feeds))
        except Exception as exc:  # onnxruntime's own error types, from the session or the capture
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            self.say(f"CUDA graph for batch {key[0]} x {key[1]} targets failed ({first}); running it without")
            return None
