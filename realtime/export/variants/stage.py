"""The variants stage: one row per kind of derived graph, each made from the checked fp32 graph.

An export asks for at most one (config.validate refuses int8 beside fp16 or trt8); the pipeline writes
the fp32 graph to a temporary file, checks it, and hands it to the chosen row, which derives, checks
and writes the variant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from realtime.export.config import ExportConfig
from realtime.export.variants import gpu
from realtime.export.variants.int8 import stage as int8_stage
from realtime.progress import Progress


@dataclass(frozen=True)
class Derived:
    """What a variant reports: its fidelity against fp32 (None where none was measured), and for int8
    the CPUs it was made for."""

    fidelity: Any = None
    int8_target: str | None = None


Derive = Callable[[Path, onnx.ModelProto, Path, tuple[int, int], ExportConfig, Progress], Derived]


@dataclass(frozen=True)
class Variant:
    name: str
    wanted: Callable[[ExportConfig], bool]
    steps: Callable[[ExportConfig], int]  # progress steps it takes
    derive: Derive  # (fp32 graph's path, its model, output, input size, config, progress) -> Derived


def _int8(reference: Path, model: onnx.ModelProto, output: Path, size: tuple[int, int], config: ExportConfig,
          progress: Progress) -> Derived:  # fmt: skip
    fidelity, target = int8_stage.quantize_checked(reference, output, size, config, progress)
    return Derived(fidelity, target)


def _gpu(reference: Path, model: onnx.ModelProto, output: Path, size: tuple[int, int], config: ExportConfig,
         progress: Progress) -> Derived:  # fmt: skip
    return Derived(gpu.derive_checked(reference, model, output, size, config, progress))


VARIANTS = (
    Variant("int8", lambda config: config.int8, int8_stage.steps, _int8),
    Variant("gpu", gpu.wanted, gpu.steps, _gpu),
)


def steps(config: ExportConfig) -> int:
    return sum(variant.steps(config) for variant in VARIANTS)


def chosen(config: ExportConfig) -> Variant | None:
    """The variant the config asks for, or None for the plain fp32 graph."""
    return next((variant for variant in VARIANTS if variant.wanted(config)), None)
