"""Where a graph runs: onnxruntime's execution providers, their options, and what to tell the user.

One registry (PROVIDER_CHAINS): the CLI builds its choices from it, `auto` tries the chain in order.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class EngineOptions:
    providers: str = "auto"
    fp16: bool = False
    tf32: bool = True  # CUDA: TF32 matrix units (onnxruntime's default); False gives CPU-equal maps
    trt_cache: Path | None = None
    threads: int | None = None  # intra-op threads on CPU; None: one per core
    warmup: int = 2
    io_binding: bool = True
    cuda_graph: bool = False  # CUDA: fixed-shape copies replayed as CUDA graphs (replay.py)


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


def cuda_graph_provider(options: EngineOptions) -> tuple[str, dict[str, str]]:
    """The CUDA provider alone (a node on the CPU would break the capture), with CUDA graphs on."""
    return CUDA, {**provider_options(CUDA, options), "enable_cuda_graph": "1"}


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
    if got == CPU and precision == "fp16":
        line += "; an fp16 graph is for GPUs: onnxruntime runs it here through casts to float32, slower than fp32"
    if got != CPU and precision.startswith("int8"):
        # measured on an H200: VGG16 pooled int8 2.1 ms against fp32 1.3 ms (docs/gpu.md)
        line += "; int8 graphs are made for CPUs, the fp32 graph runs faster on a GPU"
    return line


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's share), not all the host has."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_session_options(threads: int | None = None, prepack: bool = False) -> Any:
    """The session settings every graph here runs with (benchmarks use them too, for like-with-like).

    fp32 graphs run without weight prepacking: it would keep a second copy of fc1 for the
    backward pass (+400 MB RSS) and buys no speed. int8 graphs need it: QLinearConv runs
    2.3x faster on prepacked weights.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # errors come back as exceptions, said in one line; no red duplicate
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.disable_prepacking", "0" if prepack else "1")
    # no spin-waiting between runs: the same speed for one session (91.8 against 91.9 ms, VGG16 pooled),
    # but spinning pool threads steal the cores from the drawing thread, and from other sessions
    # (three alternating VGG16 sessions ran 25% slower with spinning on)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads or usable_cores()
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
