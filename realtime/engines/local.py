"""A classifier's Grad-CAM graph in this process, on onnxruntime: warm-up, IO binding, CUDA graphs.

The engine holds no per-frame state: `run` takes frames and targets and returns a frozen CamResult
(engines.calls builds it, as for every engine).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from realtime import contract
from realtime.contract import ContractError, ModelInfo
from realtime.engines.calls import contract_feeds, run_batch, warm_up
from realtime.engines.graph_file import ModelNotFoundError, OpenedGraph, open_graph
from realtime.engines.providers import CUDA, TRT, EngineOptions
from realtime.engines.replay import Replays, cuda_graph_session
from realtime.engines.result import CamResult


class LocalEngine:
    """A loaded, validated and warmed-up Grad-CAM graph on onnxruntime (an engines.Engine)."""

    def __init__(
        self, model_path: str | Path, options: EngineOptions | None = None, opened: OpenedGraph | None = None
    ) -> None:
        """`opened`: the file already opened (open_engine opens it once to read which task it is)."""
        self.options = options or EngineOptions()
        opened = opened or open_graph(model_path, self.options)
        self.session, self.path, self.provider = opened.session, opened.path, opened.provider
        self.notice, self.cpu_warning = opened.notice, opened.cpu_warning
        self.info: ModelInfo = contract.validate(*opened.shapes()[:2], opened.metadata, str(self.path),
                                                 opened.shapes()[2])  # fmt: skip
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._on_gpu = self.provider in (TRT, CUDA)
        self._replays: Replays | None = None
        if self.options.cuda_graph:
            if self.provider == CUDA:
                self._replays = Replays(cuda_graph_session(self.path, self.options), self._every_output)
            else:
                self.notice += f"; --cuda-graph needs the CUDA provider, so {self.provider} runs without it"
        self.warmup_ms = warm_up(self.run, self.info, self.options.warmup)

    def _every_output(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, dict(feeds)), strict=True))

    @property
    def has_gradients(self) -> bool:
        return self.info.has_gradients_output

    @property
    def provides(self) -> frozenset[str]:
        """What the graph gives besides Grad-CAM at its first layer (contract.GRADIENTS, SALIENCY, ...)."""
        return self.info.provides

    def run(
        self, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray, need_gradients: bool = True
    ) -> CamResult:
        """One onnxruntime call for a batch of model-sized BGR uint8 images."""
        return run_batch(
            self.info, self.output_names, self._call, images, targets, need_gradients, self.provider, self.path
        )

    def _call(self, images: np.ndarray, targets: np.ndarray, wanted: list[str]) -> dict[str, np.ndarray]:
        feeds = contract_feeds(self.info.profile, images, targets)
        replayed = self._replays.run(feeds, wanted) if self._replays is not None else None
        if replayed is not None:
            return replayed
        if self._on_gpu and self.options.io_binding:
            return self._run_bound(feeds, wanted)
        return dict(zip(wanted, self.session.run(wanted, feeds), strict=True))

    def _run_bound(self, feeds: Mapping[str, np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray]:
        """GPU path: inputs copied once, wanted outputs copied back, the rest left on the device."""
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cpu" if name in wanted else "cuda")
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {n: v.numpy() for n, v in zip(self.output_names, values, strict=True) if n in wanted}


def working_gpu_provider(model_path: str | Path) -> str | None:
    """The GPU provider onnxruntime really runs `model_path` on here (TensorRT or CUDA), or None.

    Listing a provider in get_available_providers() proves nothing: onnxruntime-gpu lists CUDA
    and TensorRT on machines without a GPU and falls back at session creation.
    """
    try:
        engine = LocalEngine(model_path, EngineOptions(providers="auto", warmup=0))
    except (ContractError, ModelNotFoundError):
        return None
    return engine.provider if engine.provider in (TRT, CUDA) else None
