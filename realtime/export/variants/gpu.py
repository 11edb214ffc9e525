"""The GPU variants of an export: the TensorRT 8 profile and the fp16 copy, made from the checked fp32
graph and checked against it before they are written.

The trt8 profile changes types at the edges and spells LayerNormalization out: it must give the fp32
graph's answers (1e-5 of each output's largest value). fp16 changes the arithmetic: its check is
fidelity on held-out demo scenes, for the fp16 graph as onnxruntime runs it on this CPU and for the
same graph with every half-precision tensor rounded (what a GPU stores), top-1 and map correlation.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from realtime import contract
from realtime.export.checks import portable
from realtime.export.config import ExportConfig, ExportError, self_check_inputs
from realtime.export.graph.builder import set_metadata
from realtime.export.graph.writing import save_checked
from realtime.export.variants import fp16, trt8
from realtime.progress import Progress

AGREEMENT = 1e-5  # trt8 against fp32: of each output's largest magnitude
FIDELITY_SCENES = 24  # held-out demo scenes for the fp16 check (3 graphs each: a VGG16 pooled takes ~20 s)
MIN_CORRELATION = 0.99  # the fp16 maps' correlation with fp32's, below which the export stops
FP16_TINY = 6e-8  # fp16's smallest subnormal
PRECISION_FP16 = "fp16"


@dataclass(frozen=True)
class Fp16Fidelity:
    """fp16 against fp32 on the same held-out scenes."""

    images: int
    top1_agreement: float  # the fp16 graph's top-1 equals fp32's
    map_correlation: float  # mean Pearson correlation of the Grad-CAM maps
    rounded_top1_agreement: float  # the same, every half-precision tensor rounded (a GPU's storage)
    rounded_map_correlation: float
    largest_logit: float = 0.0  # the fp32 graph's, over the scenes: below fp16's range, nothing survives

    def ok(self) -> bool:
        return min(self.map_correlation, self.rounded_map_correlation) >= MIN_CORRELATION


def steps(config: ExportConfig) -> int:
    return int(config.trt8) + 2 * int(config.fp16)


def wanted(config: ExportConfig) -> bool:
    return config.trt8 or config.fp16


def derive_checked(
    reference: Path, model: onnx.ModelProto, output: Path, size: tuple[int, int], config: ExportConfig,
    progress: Progress,
) -> Fp16Fidelity | None:  # fmt: skip
    """Write the variants `config` asks for of `model` (checked, written at `reference`) to `output`."""
    derived, profile = model, contract.PROFILE_DEFAULT
    if config.trt8:
        with progress.step("the TensorRT 8 profile: float32 image, int32 targets and classes", "trt8"):
            try:
                derived, profile = trt8.to_trt8(derived), contract.PROFILE_TRT8
            except trt8.ProfileError as exc:
                raise ExportError(str(exc)) from exc
    rounded = None
    if config.fp16:
        with progress.step("fp16: half-precision arithmetic; the softmax and cam normalisation stay fp32", "fp16"):
            rounded = fp16.rounded_like_fp16(derived)
            derived = fp16.to_fp16(derived)
            set_metadata(derived, contract.META_PRECISION, PRECISION_FP16)
    precision = PRECISION_FP16 if config.fp16 else "fp32"
    scenes: list[Fp16Fidelity] = []

    def check(path: Path) -> None:
        try:
            portable.check_portable(path, precision, derived, profile)
        except portable.GraphCheckError as exc:
            raise ExportError(str(exc)) from exc
        if not config.fp16:
            _agrees(reference, path, len(_labels(derived)), size)
            return
        assert rounded is not None
        with progress.step(f"fidelity: fp16 against fp32 on {FIDELITY_SCENES} held-out demo scenes", "fidelity"):
            scenes.append(_fidelity(reference, path, rounded, size))
        if not scenes[0].ok():
            why = f"its largest logit is {scenes[0].largest_logit:.1e}, and fp16 holds nothing below {FP16_TINY:.0e}; "
            raise ExportError(
                f"fp16 maps correlate {min(scenes[0].map_correlation, scenes[0].rounded_map_correlation):.3f} with "
                f"fp32's (needs {MIN_CORRELATION}): {why if scenes[0].largest_logit < 1e-3 else ''}"
                "this model loses too much in half precision: keep the fp32 graph"
            )

    save_checked(derived, output, check)
    return scenes[0] if scenes else None


def _labels(model: onnx.ModelProto) -> list[str]:
    meta = {p.key: p.value for p in model.metadata_props}
    logits = next(o for o in model.graph.output if o.name == contract.OUT_LOGITS)
    return list(contract.parse_labels(meta.get(contract.META_LABELS), logits.type.tensor_type.shape.dim[1].dim_value))


def _agrees(reference: Path, candidate: Path, num_classes: int, size: tuple[int, int]) -> None:
    """The candidate gives the reference's outputs on the self-check's images and targets."""
    from realtime.export.checks.run import run_onnx

    image, targets = self_check_inputs(num_classes, size)
    want, got = run_onnx(reference, image, targets), run_onnx(candidate, image, targets)
    for name, value in want.items():
        scale = max(float(np.abs(value).max()), 1e-12)
        error = float(np.abs(got[name].astype(np.float64) - value).max()) / scale
        if error > AGREEMENT:
            raise ExportError(f"the {candidate.name} variant's {name} differs from fp32's by {error:.1e}; report it")


def _fidelity(reference: Path, candidate: Path, rounded: onnx.ModelProto, size: tuple[int, int]) -> Fp16Fidelity:
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions
    from realtime.export.variants.int8.calibration import demo_holdout
    from realtime.maps.metrics import map_correlation

    images, _ = demo_holdout(FIDELITY_SCENES, size)
    with tempfile.TemporaryDirectory(dir=candidate.parent) as tmp:
        rounded_path = Path(tmp) / "rounded.onnx"
        onnx.save(rounded, str(rounded_path))
        options = EngineOptions(providers="cpu", warmup=0)
        engines = [LocalEngine(p, options) for p in (reference, candidate, rounded_path)]
        agree: dict[int, list[bool]] = {1: [], 2: []}
        largest = 0.0
        corr: dict[int, list[float]] = {1: [], 2: []}
        for image in images:
            want = engines[0].run(image[None], [[-1]], need_gradients=False)
            top = int(want.classes[0, 0])
            largest = max(largest, float(np.abs(want.logits).max()))
            for i in (1, 2):
                got = engines[i].run(image[None], [[top]], need_gradients=False)  # the same class's map
                agree[i].append(int(np.argmax(got.logits[0])) == top)
                corr[i].append(map_correlation(want.cam[0, 0], got.cam[0, 0]))
    means = [float(np.mean(values)) for values in (agree[1], corr[1], agree[2], corr[2])]
    return Fp16Fidelity(len(images), means[0], means[1], means[2], means[3], largest_logit=largest)
