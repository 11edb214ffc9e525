"""CAM methods over one image's activations and gradients. Pure numpy, no I/O.

Shapes: activations A [h,w,k]; gradients G [K,h,w,k] (one per target);
channel weights W [K,k]. Every method returns raw maps [K,h,w] >= 0 (input
resolution for the input-gradient methods); call `normalise` for display.
Each method declares what it needs beyond the channel weights (Method.needs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from realtime.contract import GRADIENTS, GUIDED, LAYERS, SALIENCY

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
    """What a graph gave for one image; a `pooled` graph has no gradients, a version 1 graph one layer."""

    weights: np.ndarray  # [K,k] channel weights (Grad-CAM's, computed in the graph)
    activations: np.ndarray | None = None  # [h,w,k]
    gradients: np.ndarray | None = None  # [K,h,w,k]
    graph_cam: np.ndarray | None = None  # [K,h,w] the graph's own Grad-CAM
    saliency: np.ndarray | None = None  # [K,H,W,3] d logit / d input
    guided: np.ndarray | None = None  # [K,H,W,3] guided backpropagation to the input
    layers: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # (activations, gradients) of every layer

    def available(self) -> frozenset[str]:
        present = {
            GRADIENTS: self.gradients is not None and self.activations is not None,
            SALIENCY: self.saliency is not None,
            GUIDED: self.guided is not None,
            LAYERS: len(self.layers) > 1,
        }
        return frozenset(k for k, v in present.items() if v)


def _from_graph(inputs: MapInputs) -> np.ndarray:
    """Grad-CAM: the graph computed it already; otherwise from its channel weights."""
    if inputs.graph_cam is not None:
        return inputs.graph_cam
    if inputs.activations is None:
        raise MethodNeedsGradientsError("gradcam needs the graph's cam or its activations")
    return grad_cam(inputs.activations, None, inputs.weights)


def counterfactual(inputs: MapInputs) -> np.ndarray:
    """Selvaraju et al. 2017, counterfactual explanation: ReLU(sum_k -w_k A_k), what argues against the class."""
    if inputs.activations is None:
        raise MethodNeedsGradientsError("counterfactual needs the graph's activations")
    return _weighted_sum(inputs.activations, -inputs.weights)


def _upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[K,h,w] -> [K,H,W], bilinear (as the display upsamples)."""
    if maps.shape[1:] == size:
        return maps
    return np.stack(
        [cv2.resize(m.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for m in maps]
    )


def saliency(inputs: MapInputs) -> np.ndarray:
    """Simonyan et al. 2014: the largest absolute input gradient over the colour channels."""
    assert inputs.saliency is not None
    return np.abs(inputs.saliency).max(axis=-1)


def guided_gradcam(inputs: MapInputs) -> np.ndarray:
    """Selvaraju et al. 2017: guided backpropagation times the upsampled Grad-CAM, at input resolution."""
    assert inputs.guided is not None
    coarse = _from_graph(inputs)
    return np.abs(inputs.guided).max(axis=-1) * normalise(_upsample(coarse, inputs.guided.shape[1:3]))


def layercam_fusion(inputs: MapInputs) -> np.ndarray:
    """Jiang et al. 2021: LayerCAM of every exported layer, each scaled to [0, 1], upsampled to the finest
    map and averaged (pytorch-grad-cam's aggregation)."""
    per_layer = [normalise(layer_cam(a, g)) for a, g in inputs.layers]
    finest = max((m.shape[1:] for m in per_layer), key=lambda hw: hw[0] * hw[1])
    return np.mean([_upsample(m, finest) for m in per_layer], axis=0)


def _with_gradients(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[MapInputs], np.ndarray]:
    def compute(inputs: MapInputs) -> np.ndarray:
        assert inputs.activations is not None and inputs.gradients is not None  # checked by maps()
        return fn(inputs.activations, inputs.gradients)

    return compute


ADVICE = {  # what to export when a method needs something a graph does not give
    GRADIENTS: "the full gradients; re-export with gradcam-export --gradients full",
    LAYERS: "several layers; re-export with gradcam-export --layer A --layer B",
    SALIENCY: "input gradients; re-export with gradcam-export --input-gradients",
    GUIDED: "input gradients; re-export with gradcam-export --input-gradients",
}


@dataclass(frozen=True)
class Method:
    """A CAM method: how it turns a graph's outputs into maps, and what it needs from the graph."""

    name: str
    needs: frozenset[str]  # of contract.GRADIENTS, SALIENCY, GUIDED, LAYERS
    compute: Callable[[MapInputs], np.ndarray]
    summary: str
    against: bool = False  # shows the evidence against the class (scored apart from the others)

    @property
    def needs_gradients(self) -> bool:
        """Whether the graph's gradient outputs must be fetched for it."""
        return bool(self.needs)

    def usable(self, provides: frozenset[str]) -> bool:
        return self.needs <= provides

    def lacking(self, provides: frozenset[str]) -> str | None:
        """What a graph providing `provides` must be re-exported with for this method; None if it can run."""
        missing = self.needs - provides
        return ADVICE[min(missing)] if missing else None


METHODS: Mapping[str, Method] = {
    m.name: m
    for m in (
        Method("gradcam", frozenset(), _from_graph, "Grad-CAM: mean gradient per channel"),
        Method("gradcam++", frozenset({GRADIENTS}), _with_gradients(grad_cam_pp), "Grad-CAM++: second-order weights"),
        Method("xgradcam", frozenset({GRADIENTS}), _with_gradients(xgrad_cam), "XGrad-CAM: normalised gradients"),
        Method("hirescam", frozenset({GRADIENTS}), _with_gradients(hires_cam), "HiResCAM: gradient x activation"),
        Method("layercam", frozenset({GRADIENTS}), _with_gradients(layer_cam), "LayerCAM: positive gradients x A"),
        Method("counterfactual", frozenset(), counterfactual, "Grad-CAM, negated weights: evidence against", True),
        Method("layercam-fusion", frozenset({GRADIENTS, LAYERS}), layercam_fusion, "LayerCAM fused over layers"),
        Method("guided-gradcam", frozenset({GUIDED}), guided_gradcam, "guided backprop x Grad-CAM, input resolution"),
        Method("saliency", frozenset({SALIENCY}), saliency, "input-gradient saliency, input resolution"),
    )
}


def usable_methods(provides: frozenset[str]) -> list[str]:
    """The methods a graph can serve, in registry order (the m key cycles through them)."""
    return [name for name, m in METHODS.items() if m.usable(provides)]


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown CAM method {name!r}; choose one of {', '.join(METHODS)}") from None


def maps(name: str, inputs: MapInputs) -> np.ndarray:
    """Raw maps [K,h,w] for one image by the named method."""
    spec = method(name)
    lacking = spec.lacking(inputs.available())
    if lacking:
        raise MethodNeedsGradientsError(f"{name} needs {lacking} (this graph lacks them), or use --method gradcam")
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
        if not spec.needs:
            raise MethodNeedsGradientsError(f"{name} needs gradients or channel weights")
        weights = np.zeros((0, activations.shape[-1]), np.float32)
    return maps(name, MapInputs(weights, activations, gradients))
