"""A Grad-CAM graph in this process, on onnxruntime: providers, the fp16 copy, warm-up, IO binding.

The engine holds no per-frame state: `run` takes frames and targets and returns a frozen CamResult
(engines.calls builds it, as for every engine).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from realtime import contract
from realtime.contract import ContractError, ModelInfo
from realtime.engines.calls import contract_feeds, run_batch, warm_up
from realtime.engines.int8_cpu import int8_warning
from realtime.engines.providers import (
    CPU,
    CUDA,
    TRT,
    EngineOptions,
    cpu_session_options,
    describe_providers,
    provider_chain,
)
from realtime.engines.replay import Replays, cuda_graph_session
from realtime.engines.result import CamResult


class ModelNotFoundError(FileNotFoundError):
    """No model file where the user pointed; the message says how to make one."""


def export_command(path: Path) -> str:
    """The gradcam-export line that writes `path`, read from the exporter's default name
    <source>_gradcam_<pooled|full>[_int8].onnx; VGG16 from Keras only for a name that says vgg16."""
    stem, gradients, int8 = path.stem, "full", ""
    if stem.endswith("_int8"):
        stem, int8 = stem[: -len("_int8")], " --int8"
    for kind in ("pooled", "full"):
        if stem.endswith(f"_gradcam_{kind}"):
            stem, gradients = stem[: -len(f"_gradcam_{kind}")], kind
    options = f"--gradients {gradients}{int8} --output {path}"
    if stem == "vgg16":
        return f"gradcam-export --weights imagenet {options} (offline: --weights PATH or --weights random)"
    return f"gradcam-export --onnx {stem}.onnx {options} (your classifier exported to ONNX)"


def same_model(copy: Any, original: Any) -> bool:
    """An fp16 copy is the original's when its contract metadata (model, layers, labels) is the same."""
    keys = (contract.META_MODEL_NAME, contract.META_LAYERS, contract.META_LAYER, contract.META_LABELS)
    a, b = (dict(s.get_modelmeta().custom_metadata_map) for s in (copy, original))
    return all(a.get(k) == b.get(k) for k in keys)


class LocalEngine:
    """A loaded, validated and warmed-up Grad-CAM graph on onnxruntime (an engines.Engine)."""

    def __init__(self, model_path: str | Path, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        path = Path(model_path)
        if not path.exists():
            hint = f"Make one with: {export_command(path)}, or try gradcam-live --demo"
            raise ModelNotFoundError(f"no model at {path}. {hint}")
        providers = provider_chain(self.options)
        self.session = self._open(path, providers, prepack=False)
        half = contract.fp16_copy(path)
        if self.session.get_providers()[0] == CUDA and half != path and half.exists():  # faster on CUDA
            copy = self._open(half, providers, prepack=False)
            if same_model(copy, self.session):  # not a stale copy of another export
                self.session, path = copy, half
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        int8 = metadata.get(contract.META_PRECISION, "fp32").startswith("int8")
        if int8:
            self.session = self._open(path, providers, prepack=True)  # int8 kernels want packed weights
        self.provider: str = self.session.get_providers()[0]
        self.cpu_warning: str | None = None
        if int8 and self.provider == CPU:
            self.cpu_warning = int8_warning(metadata.get(contract.META_INT8_TARGET), str(path))
        self.notice = describe_providers(
            self.options.providers, providers[0][0], self.provider, metadata.get(contract.META_PRECISION, "fp32")
        )
        if path == half and half != Path(model_path):
            self.notice += f"; its fp16 copy {half.name} runs instead"
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        types = {i.name: i.type for i in self.session.get_inputs()}
        self.info: ModelInfo = contract.validate(inputs, outputs, metadata, str(path), types)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.path = path
        self._on_gpu = self.provider in (TRT, CUDA)
        self._replays: Replays | None = None
        if self.options.cuda_graph:
            if self.provider == CUDA:
                self._replays = Replays(cuda_graph_session(path, self.options), self._every_output)
            else:
                self.notice += f"; --cuda-graph needs the CUDA provider, so {self.provider} runs without it"
        self.warmup_ms = warm_up(self.run, self.info, self.options.warmup)

    def _open(self, path: Path, providers: list[tuple[str, dict[str, str]]], prepack: bool) -> Any:
        import onnxruntime as ort

        options = cpu_session_options(self.options.threads, prepack)
        probing = providers[0][0] != CPU
        if probing:  # a missing CUDA prints two long errors from the process-wide logger; one line is enough
            ort.set_default_logger_severity(4)
        try:
            # onnxruntime's Python wrapper prints its own multi-line "EP Error ... Falling back" banner
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                return ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ContractError(
                f"{path} is not a loadable ONNX model ({type(exc).__name__}: {exc}); re-export it with gradcam-export"
            ) from exc
        finally:
            if probing:
                ort.set_default_logger_severity(2)  # onnxruntime's default: warnings

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
