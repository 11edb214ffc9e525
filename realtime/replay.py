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
from realtime.providers import EngineOptions, cpu_session_options, cuda_graph_provider

SessionFactory = Callable[[bytes], Any]  # a serialised fixed-shape model -> an onnxruntime session


def cuda_graph_session(options: EngineOptions) -> SessionFactory:
    """Sessions on the CUDA provider alone (a node left on the CPU breaks the capture), CUDA graphs on."""

    def make(model: bytes) -> Any:
        import onnxruntime as ort

        providers = [cuda_graph_provider(options)]
        return ort.InferenceSession(model, cpu_session_options(options.threads), providers=providers)

    return make


def fixed_shape_model(path: str | Path, batch: int, targets: int) -> bytes:
    """The graph with its batch and targets-per-image written into its inputs (a new model, serialised)."""
    import onnx

    model = onnx.load(str(path))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        wanted = {contract.INPUT_IMAGE: (batch,), contract.INPUT_TARGETS: (batch, targets)}.get(value.name, ())
        for dim, size in zip(dims, wanted, strict=False):
            dim.Clear()
            dim.dim_value = size
    return bytes(model.SerializeToString())


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


def bind(session: Any, feeds: Mapping[str, np.ndarray], device: str) -> BoundReplay:
    """Allocate device buffers shaped by one plain run, bind them once, and capture (the first bound run)."""
    import onnxruntime as ort

    names = [o.name for o in session.get_outputs()]
    probe = dict(zip(names, session.run(names, dict(feeds)), strict=True))
    binding = session.io_binding()
    inputs = {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), device, 0) for name, v in feeds.items()}
    for name, value in inputs.items():
        binding.bind_ortvalue_input(name, value)
    outputs = {
        name: ort.OrtValue.ortvalue_from_shape_and_type(v.shape, v.dtype, device, 0) for name, v in probe.items()
    }
    for name, value in outputs.items():
        binding.bind_ortvalue_output(name, value)
    replay = BoundReplay(session, binding, inputs, outputs)
    replay.run(feeds, [])  # onnxruntime captures the CUDA graph here; later runs replay it
    return replay


@dataclass
class Replays:
    """The engine's fixed-shape replays, one per (batch, targets per image), made when first needed.

    A capture that fails is said in one line, and that shape runs without a CUDA graph from then on.
    """

    path: Path
    make_session: SessionFactory
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
            return bind(self.make_session(fixed_shape_model(self.path, *key)), feeds, self.device)
        except Exception as exc:  # onnxruntime's own error types, from capture or from the fixed-shape copy
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            self.say(f"CUDA graph for batch {key[0]} x {key[1]} targets failed ({first}); running it without")
            return None
