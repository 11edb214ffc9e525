"""onnxruntime session for a Grad-CAM graph: providers, warm-up, IO binding, CamResult.

The engine holds no per-frame state: `run` takes frames and targets and
returns a frozen CamResult.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from realtime import contract
from realtime.contract import ContractError, ModelInfo

TRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# One registry: the CLI builds its choices from it, auto tries the chain in order.
PROVIDER_CHAINS: Mapping[str, tuple[str, ...]] = {
    "auto": (TRT, CUDA, CPU),
    "tensorrt": (TRT, CUDA, CPU),
    "cuda": (CUDA, CPU),
    "cpu": (CPU,),
}


class ModelNotFoundError(FileNotFoundError):
    """No model file where the user pointed; the message says how to make one."""


@dataclass(frozen=True)
class EngineOptions:
    providers: str = "auto"
    fp16: bool = False
    tf32: bool = True  # CUDA: TF32 matrix units (onnxruntime's default); False gives CPU-equal maps
    trt_cache: Path | None = None
    threads: int | None = None  # intra-op threads on CPU; None: one per core
    warmup: int = 2
    io_binding: bool = True


@dataclass(frozen=True)
class CamResult:
    """Everything one onnxruntime call returns for a batch, plus the time it took."""

    logits: np.ndarray  # [N,C]
    probabilities: np.ndarray  # [N,C]
    classes: np.ndarray  # [N,K]
    activations: np.ndarray | None  # [N,h,w,k]
    weights: np.ndarray  # [N,K,k]
    cam: np.ndarray  # [N,K,h,w], the graph's own Grad-CAM
    gradients: np.ndarray | None  # [N,K,h,w,k] for `full` graphs
    seconds: float
    provider: str
    labels: Sequence[str] = field(repr=False, default=())

    def top(self, index: int = 0, k: int = 5) -> list[tuple[int, str, float]]:
        """The k most probable classes of image `index`: (id, name, probability)."""
        probs = self.probabilities[index]
        order = np.argsort(-probs, kind="stable")[:k]
        return [(int(c), self.labels[c] if c < len(self.labels) else str(c), float(probs[c])) for c in order]


def provider_options(name: str, options: EngineOptions) -> dict[str, str]:
    if name == TRT:
        cache = options.trt_cache or Path(os.environ.get("GRADCAM_TRT_CACHE", Path.home() / ".cache/gradcam/trt"))
        return {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "True",
            "trt_fp16_enable": "True" if options.fp16 else "False",
        }
    if name == CUDA:
        return {"cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "1" if options.tf32 else "0"}
    return {}


def explain_missing_gpu(asked: str, got: str) -> str:
    return (
        f"providers={asked}: running on {got}. The GPU providers need an NVIDIA driver with CUDA 13 and cuDNN 9 "
        "(onnxruntime-gpu 1.31); on Jetson install NVIDIA's onnxruntime-gpu wheel. Use --providers cpu to "
        "skip this probe."
    )


def gpu_present() -> bool:
    """An NVIDIA driver's device nodes exist (desktop GPUs, or a Jetson's integrated one)."""
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/nvhost-ctrl-gpu"))


def describe_providers(asked: str, first: str, got: str, precision: str = "fp32", gpu_here: bool | None = None) -> str:
    """One line for the user: where the graph runs, and why not where they asked.

    The CUDA / cuDNN advice is for people who asked for a GPU or have one that did not load;
    `auto` on a laptop without one just says so.
    """
    if got == CPU and first != CPU:
        if asked == "auto" and not (gpu_present() if gpu_here is None else gpu_here):
            return f"providers={asked}: no GPU here, running on {got}"
        return explain_missing_gpu(asked, got)
    line = f"providers={asked}: running on {got}"
    if first == TRT and got == CUDA:
        line = f"providers={asked}: TensorRT did not load (libnvinfer.so.10 missing?), running on {got}"
    if got != CPU and precision.startswith("int8"):
        # measured on an H200: VGG16 pooled int8 2.1 ms against fp32 1.3 ms (docs/gpu.md)
        line += "; int8 graphs are made for CPUs, the fp32 graph runs faster on a GPU"
    return line


def cpu_session_options(threads: int | None = None, prepack: bool = False) -> Any:
    """The session settings every graph here runs with (benchmarks use them too, for like-with-like).

    fp32 graphs run without weight prepacking: it would keep a second copy of fc1 for the
    backward pass (+400 MB RSS) and buys no speed. int8 graphs need it: QLinearConv runs
    2.3x faster on prepacked weights.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.disable_prepacking", "0" if prepack else "1")
    # no spin-waiting between runs: the same speed for one session (91.8 against 91.9 ms, VGG16 pooled),
    # but spinning pool threads steal the cores from the drawing thread, and from other sessions
    # (three alternating VGG16 sessions ran 25% slower with spinning on)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    return options


@functools.cache
def preload_gpu_libraries() -> None:
    """Load CUDA and cuDNN from pip's nvidia packages, once, before the first GPU session.

    `pip install onnxruntime-gpu[cuda,cudnn]` puts the libraries in site-packages/nvidia, where
    the dynamic loader does not look: without this the CUDA provider fails to load unless the
    user sets LD_LIBRARY_PATH. onnxruntime's preload_dlls prints one line per library it cannot
    find; a system-wide CUDA makes those lines noise, so they are dropped.
    """
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None or CUDA not in ort.get_available_providers():
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
        preload()


def provider_chain(options: EngineOptions) -> list[tuple[str, dict[str, str]]]:
    """The providers `options.providers` names that this onnxruntime has (the CPU always), with their options.

    When the chain starts on a GPU provider, pip's CUDA libraries are loaded first.
    """
    import onnxruntime as ort

    if options.providers not in PROVIDER_CHAINS:
        raise ValueError(f"unknown providers {options.providers!r}; choose one of {', '.join(PROVIDER_CHAINS)}")
    available = set(ort.get_available_providers())
    chain = [p for p in PROVIDER_CHAINS[options.providers] if p in available or p == CPU]
    if chain[0] != CPU:
        preload_gpu_libraries()
    return [(name, provider_options(name, options)) for name in chain]


class Engine:
    """A loaded, validated and warmed-up Grad-CAM graph."""

    def __init__(self, model_path: str | Path, options: EngineOptions | None = None) -> None:

        self.options = options or EngineOptions()
        path = Path(model_path)
        if not path.exists():
            raise ModelNotFoundError(
                f"no model at {path}. Make one with: gradcam-export --weights imagenet --output {path} "
                "(offline: --weights PATH or --weights random), or try gradcam-live --demo"
            )
        providers = provider_chain(self.options)
        self.session = self._open(path, providers, prepack=False)
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if metadata.get(contract.META_PRECISION, "fp32").startswith("int8"):
            self.session = self._open(path, providers, prepack=True)  # int8 kernels want packed weights
        self.provider = self.session.get_providers()[0]
        self.notice = describe_providers(
            self.options.providers, providers[0][0], self.provider, metadata.get(contract.META_PRECISION, "fp32")
        )
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        types = {i.name: i.type for i in self.session.get_inputs()}
        self.info: ModelInfo = contract.validate(inputs, outputs, metadata, str(path), types)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.path = path
        self._on_gpu = self.provider in (TRT, CUDA)
        self.warmup_ms = 0.0  # the last warm-up call: what a frame will cost, known before the first one
        for _ in range(self.options.warmup):
            blank = np.zeros((1, self.info.input_height, self.info.input_width, 3), np.uint8)
            self.warmup_ms = self.run(blank, [[-1]]).seconds * 1000.0

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

    @property
    def has_gradients(self) -> bool:
        return self.info.has_gradients_output

    def check_targets(self, targets: np.ndarray) -> None:
        bad = targets[(targets < -1) | (targets >= self.info.num_classes)]
        if bad.size:
            raise ValueError(
                f"class id {int(bad[0])} is out of range 0..{self.info.num_classes - 1} (or -1 for ranked)"
            )
        if targets.shape[1] > self.info.num_classes:
            raise ValueError(f"top-k {targets.shape[1]} exceeds the model's {self.info.num_classes} classes")
        if targets.shape[1] > contract.MAX_TARGETS:
            raise ValueError(f"{targets.shape[1]} targets per image; the graph explains at most {contract.MAX_TARGETS}")

    def run(
        self, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray, need_gradients: bool = True
    ) -> CamResult:
        """One onnxruntime call for a batch of model-sized BGR uint8 images."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        expected = (self.info.input_height, self.info.input_width, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"images must be [N,{expected[0]},{expected[1]},3] uint8, got {images.shape}")
        target_array = np.asarray(targets, dtype=np.int64)
        if target_array.ndim == 1:
            target_array = np.broadcast_to(target_array, (images.shape[0], target_array.shape[0]))
        target_array = np.ascontiguousarray(target_array)
        self.check_targets(target_array)
        wanted = [n for n in self.output_names if need_gradients or n != contract.OUT_GRADIENTS]
        feeds = {contract.INPUT_IMAGE: images, contract.INPUT_TARGETS: target_array}
        start = time.perf_counter()
        if self._on_gpu and self.options.io_binding:
            values = self._run_bound(feeds, wanted)
        else:
            values = dict(zip(wanted, self.session.run(wanted, feeds), strict=True))
        seconds = time.perf_counter() - start
        return CamResult(
            logits=values[contract.OUT_LOGITS],
            probabilities=values[contract.OUT_PROBABILITIES],
            classes=values[contract.OUT_CLASSES],
            activations=values.get(contract.OUT_ACTIVATIONS),
            weights=values[contract.OUT_WEIGHTS],
            cam=values[contract.OUT_CAM],
            gradients=values.get(contract.OUT_GRADIENTS),
            seconds=seconds,
            provider=self.provider,
            labels=self.info.labels,
        )

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
        engine = Engine(model_path, EngineOptions(providers="auto", warmup=0))
    except (ContractError, ModelNotFoundError):
        return None
    return engine.provider if engine.provider in (TRT, CUDA) else None
