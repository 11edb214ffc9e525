"""CAM methods over one image's activations and gradients. Pure numpy, no I/O.

Shapes: activations A [h,w,k]; gradients G [K,h,w,k] (one per target);
channel weights W [K,k]. Every method returns raw maps [K,h,w] >= 0; call
`normalise` for display. Only Grad-CAM can run from the channel weights
alone, which is what a `pooled` graph provides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

SMOOTH_MAX = 0.99  # the map's EMA factor: 1.0 would keep the first map for ever
EPS = 1e-7


class MethodNeedsGradientsError(ValueError):
    """The chosen method needs d logit / dA, and the model only gives channel weights."""


def normalise(maps: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Scale each map into [0, 1] by its max. NaN/inf become 0; an all-zero map stays zero."""
    clean = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    clean = np.maximum(clean, 0.0)
    peak = clean.max(axis=(-2, -1), keepdims=True)
    return clean / (peak + eps)


def smooth_maps(previous: np.ndarray | None, current: np.ndarray, weight: float) -> np.ndarray:
    """EMA over time: weight * previous + (1 - weight) * current; a shape change restarts it."""
    if previous is None or weight <= 0.0 or previous.shape != current.shape:
        return current
    return weight * previous + (1.0 - weight) * current


def _weighted_sum(activations: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ReLU(sum_k w_k A_k) for each target: [K,h,w]."""
    return np.maximum(np.einsum("hwc,kc->khw", activations, weights, optimize=True), 0.0)


def grad_cam_weights(gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM's channel weights: the spatial mean of the gradient, [K,k]."""
    return gradients.mean(axis=(1, 2))


def grad_cam(activations: np.ndarray, gradients: np.ndarray | None, weights: np.ndarray | None = None) -> np.ndarray:
    """Selvaraju et al. 2017: ReLU(sum_k mean(G_k) A_k)."""
    if weights is None:
        if gradients is None:
            raise MethodNeedsGradientsError("gradcam needs gradients or channel weights")
        weights = grad_cam_weights(gradients)
    return _weighted_sum(activations, weights)


def grad_cam_pp(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Chattopadhyay et al. 2018, closed form for an exponential score.

    alpha = G^2 / (2 G^2 + sum_ij(A) G^3), 0 where G = 0; w_k = sum_ij alpha ReLU(G).
    """
    g2 = gradients**2
    g3 = g2 * gradients
    sum_a = activations.sum(axis=(0, 1))  # [k]
    denom = 2.0 * g2 + sum_a[None, None, None, :] * g3
    safe = np.where(denom != 0.0, denom, 1.0)
    alpha = np.where(gradients != 0.0, g2 / safe, 0.0)
    weights = (alpha * np.maximum(gradients, 0.0)).sum(axis=(1, 2))
    return _weighted_sum(activations, weights)


def xgrad_cam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Fu et al. 2020: w_k = sum_ij(A G) / sum_ij(A)."""
    sum_a = activations.sum(axis=(0, 1))  # [k]
    weights = (activations[None] * gradients).sum(axis=(1, 2)) / (sum_a[None, :] + EPS)
    return _weighted_sum(activations, weights)


def hires_cam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Draelos & Carin 2020: ReLU(sum_k G_k * A_k), element-wise, no spatial averaging."""
    return np.maximum((gradients * activations[None]).sum(axis=-1), 0.0)


def layer_cam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Jiang et al. 2021: ReLU(sum_k ReLU(G_k) * A_k)."""
    return np.maximum((np.maximum(gradients, 0.0) * activations[None]).sum(axis=-1), 0.0)


@dataclass(frozen=True)
class MapInputs:
    """What a graph gave for one image; a `pooled` graph has no gradients (and no activations if pruned)."""

    weights: np.ndarray  # [K,k] channel weights (Grad-CAM's, computed in the graph)
    activations: np.ndarray | None = None  # [h,w,k]
    gradients: np.ndarray | None = None  # [K,h,w,k]
    graph_cam: np.ndarray | None = None  # [K,h,w] the graph's own Grad-CAM


def _from_graph(inputs: MapInputs) -> np.ndarray:
    """Grad-CAM: the graph computed it already; otherwise from its channel weights."""
    if inputs.graph_cam is not None:
        return inputs.graph_cam
    if inputs.activations is None:
        raise MethodNeedsGradientsError("gradcam needs the graph's cam or its activations")
    return grad_cam(inputs.activations, None, inputs.weights)


def _with_gradients(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[MapInputs], np.ndarray]:
    def compute(inputs: MapInputs) -> np.ndarray:
        assert inputs.activations is not None and inputs.gradients is not None  # checked by compute_maps
        return fn(inputs.activations, inputs.gradients)

    return compute


@dataclass(frozen=True)
class Method:
    """A CAM method: how it turns a graph's outputs into maps, and what it needs from the graph."""

    name: str
    needs_gradients: bool  # d logit / dA per position: only `full` graphs have them
    compute: Callable[[MapInputs], np.ndarray]
    summary: str

    def usable(self, has_gradients: bool) -> bool:
        return has_gradients or not self.needs_gradients


METHODS: Mapping[str, Method] = {
    m.name: m
    for m in (
        Method("gradcam", False, _from_graph, "Grad-CAM: mean gradient per channel"),
        Method("gradcam++", True, _with_gradients(grad_cam_pp), "Grad-CAM++: second-order pixel weights"),
        Method("xgradcam", True, _with_gradients(xgrad_cam), "XGrad-CAM: activation-normalised gradients"),
        Method("hirescam", True, _with_gradients(hires_cam), "HiResCAM: element-wise gradient x activation"),
        Method("layercam", True, _with_gradients(layer_cam), "LayerCAM: positive gradients x activation"),
    )
}


def usable_methods(has_gradients: bool) -> list[str]:
    """The methods a graph can serve, in registry order (the m key cycles through them)."""
    return [name for name, m in METHODS.items() if m.usable(has_gradients)]


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown CAM method {name!r}; choose one of {', '.join(METHODS)}") from None


def maps(name: str, inputs: MapInputs) -> np.ndarray:
    """Raw maps [K,h,w] for one image by the named method."""
    spec = method(name)
    if spec.needs_gradients and (inputs.gradients is None or inputs.activations is None):
        raise MethodNeedsGradientsError(
            f"{name} needs the full gradients; this model was exported with --gradients pooled. "
            "Use --method gradcam, or re-export with gradcam-export --gradients full"
        )
    return spec.compute(inputs)


def compute_maps(
    name: str,
    activations: np.ndarray,
    gradients: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Raw maps [K,h,w] from plain arrays (Grad-CAM takes weights, or derives them from gradients)."""
    spec = method(name)
    if weights is None and gradients is not None:
        weights = grad_cam_weights(gradients)
    if weights is None:
        if not spec.needs_gradients:
            raise MethodNeedsGradientsError(f"{name} needs gradients or channel weights")
        weights = np.zeros((0, activations.shape[-1]), np.float32)
    return maps(name, MapInputs(weights, activations, gradients))
