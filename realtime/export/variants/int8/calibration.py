"""Calibration frames for int8, and how faithful an int8 graph is to its fp32 original."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime.export.variants.int8.quantize import QuantizeError
from realtime.sources.fitting import fit
from realtime.sources.frame import to_bgr
from realtime.sources.kinds import FolderSource, SourceError

CALIBRATION_SOURCES = {
    "demo": "synthetic demo scenes (elephants and penguins)",
    "random": "uniform noise: a smoke test only, the ranges will be wrong for real images",
    "DIR": "a folder of your own frames (gradcam-live --save-frames DIR collects them)",
}


def calibration_images(source: str, size: tuple[int, int], count: int, seed: int = 0) -> np.ndarray:
    """[count,H,W,3] uint8 BGR calibration frames from `demo`, `random` or a folder."""
    if source == "random":
        print(
            "warning: --calibration random gives wrong activation ranges; use it for smoke tests only", file=sys.stderr
        )
        return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)
    if source == "demo":
        from realtime.sources import scenes

        return np.stack([fit(s.image, size) for s in scenes.dataset(count, seed=seed + 4242, biased=False)])
    folder = Path(source)
    if not folder.is_dir():
        raise QuantizeError(f"--calibration {source}: not demo, random or a folder of images")
    reader = FolderSource(folder)  # the same image reading as gradcam-live --source DIR
    images: list[np.ndarray] = []
    try:
        reader.open()
        while len(images) < count and (image := reader.read()) is not None:
            images.append(image)
    except SourceError:
        pass  # no image files at all: the error below says what to do
    if not images:
        raise QuantizeError(f"--calibration {source}: no readable images; collect some with gradcam-live --save-frames")
    return np.stack([fit(to_bgr(img), size) for img in images])


@dataclass(frozen=True)
class Fidelity:
    """int8 against fp32 on the same held-out images."""

    images: int
    top1_agreement: float
    map_correlation: float  # mean Pearson correlation of the Grad-CAM maps
    pointing_fp32: float | None = None
    pointing_int8: float | None = None

    def ok(self) -> bool:
        drop = (
            0.0 if self.pointing_fp32 is None or self.pointing_int8 is None else self.pointing_fp32 - self.pointing_int8
        )
        return self.top1_agreement >= 0.99 and self.map_correlation >= 0.95 and drop <= 0.02


def fidelity(
    fp32_path: Path, int8_path: Path, images: np.ndarray, masks: Sequence[np.ndarray] | None = None
) -> Fidelity:
    """Top-1 agreement and map correlation; with masks, the pointing game of both graphs too."""
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions
    from realtime.maps.metrics import map_correlation, pointing_hit, upsample

    reference = LocalEngine(fp32_path, EngineOptions(providers="cpu", warmup=0))
    quantized = LocalEngine(int8_path, EngineOptions(providers="cpu", warmup=0))
    agree, corr = [], []
    hits: dict[str, list[bool]] = {"fp32": [], "int8": []}
    for i, image in enumerate(images):
        a = reference.run(image[None], [[-1]], need_gradients=False)
        b = quantized.run(image[None], [[int(a.classes[0, 0])]], need_gradients=False)  # the same class
        agree.append(int(a.classes[0, 0]) == int(np.argmax(b.logits[0])))
        corr.append(map_correlation(a.cam[0, 0], b.cam[0, 0]))
        if masks is not None:
            for name, result in (("fp32", a), ("int8", b)):
                hits[name].append(pointing_hit(upsample(result.cam[0, 0], masks[i].shape), masks[i]))
    return Fidelity(
        images=len(images),
        top1_agreement=float(np.mean(agree)),
        map_correlation=float(np.mean(corr)),
        pointing_fp32=float(np.mean(hits["fp32"])) if masks is not None else None,
        pointing_int8=float(np.mean(hits["int8"])) if masks is not None else None,
    )


def demo_holdout(count: int, size: tuple[int, int], seed: int = 9000) -> tuple[np.ndarray, list[np.ndarray]]:
    """Held-out demo scenes (never used for calibration) with their masks, resized to the model input."""
    from realtime.sources import scenes

    held = scenes.dataset(count, seed=seed, biased=False)
    masks = [cv2.resize(s.mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0 for s in held]
    return np.stack([fit(s.image, size) for s in held]), masks


def describe(result: Any) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in vars(result).items())
