"""Saliency metrics against ground truth: pointing game, mass inside, RISE deletion/insertion.

Pure array code; the model is a callable from a batch of BGR images to the
probability of the explained class, so the metrics test without onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from realtime.maps.flow import resize_map

ScoreFn = Callable[[np.ndarray], np.ndarray]  # [B,H,W,3] uint8 -> [B] probability


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [h,w] map bilinearly resized to (height, width), NaN-safe."""
    return resize_map(np.nan_to_num(np.asarray(cam, np.float32), nan=0.0), size)


def map_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps; two flat maps agree only when they are equal."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else float(np.array_equal(a, b))


def pointing_hit(saliency: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the map's maximum falls inside the object (Zhang et al. 2016)."""
    if not np.any(saliency > 0):
        return False
    return bool(mask.flat[int(np.argmax(saliency))])


def mass_inside(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's (non-negative) mass on the object's pixels."""
    positive = np.maximum(saliency, 0.0)
    total = float(positive.sum())
    return float(positive[mask].sum()) / total if total > 0 else 0.0


def pixel_order(saliency: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Pixels from most to least salient; ties broken at random so flat maps are not row-major."""
    rng = rng or np.random.default_rng(0)
    jitter = rng.random(saliency.size) * 1e-6 * (float(np.abs(saliency).max()) or 1.0)
    return np.argsort(-(saliency.ravel() + jitter), kind="stable")


def causal_images(image: np.ndarray, order: np.ndarray, steps: int, mode: str, blur_sigma: float = 5.0) -> np.ndarray:
    """RISE's sequence: deletion turns top pixels to zero; insertion puts them back on a blurred copy."""
    h, w = image.shape[:2]
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(int)
    if mode == "deletion":
        start, fill = image, np.zeros_like(image)
    elif mode == "insertion":
        start, fill = cv2.GaussianBlur(image, (0, 0), blur_sigma), image
    else:
        raise ValueError(f"mode must be deletion or insertion, got {mode!r}")
    out = np.empty((steps + 1, h, w, 3), np.uint8)
    flat_start, flat_fill = start.reshape(-1, 3), fill.reshape(-1, 3)
    for i, n in enumerate(counts):
        frame = flat_start.copy()
        frame[order[:n]] = flat_fill[order[:n]]
        out[i] = frame.reshape(h, w, 3)
    return out


def auc(scores: np.ndarray) -> float:
    """Area under a curve sampled evenly on [0, 1], by the trapezoid rule."""
    scores = np.asarray(scores, np.float64)
    if scores.size < 2:
        raise ValueError("need at least two points")
    return float(((scores[1:] + scores[:-1]) / 2.0).sum() / (scores.size - 1))


def deletion_insertion(
    image: np.ndarray, saliency: np.ndarray, score: ScoreFn, steps: int = 16, rng: np.random.Generator | None = None
) -> tuple[float, float]:
    """(deletion AUC, insertion AUC) of the class probability; lower deletion and higher insertion are better."""
    order = pixel_order(saliency, rng)
    deletion = auc(score(causal_images(image, order, steps, "deletion")))
    insertion = auc(score(causal_images(image, order, steps, "insertion")))
    return deletion, insertion


def centre_gaussian(size: tuple[int, int], sigma_fraction: float = 0.25) -> np.ndarray:
    """The centre-bias baseline: a Gaussian bump in the middle of the frame."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sigma = sigma_fraction * min(h, w)
    return np.exp(-(((ys - (h - 1) / 2) ** 2 + (xs - (w - 1) / 2) ** 2) / (2 * sigma**2)))


def random_map(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The chance baseline: i.i.d. uniform saliency."""
    return rng.random(size).astype(np.float32)
