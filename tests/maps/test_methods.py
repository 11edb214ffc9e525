"""The CAM methods, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.maps import methods
from realtime.maps.methods import smooth_maps

# A: channel 0 = [[1,0],[0,3]], channel 1 = [[2,2],[0,0]]
A = np.stack([[[1, 0], [0, 3]], [[2, 2], [0, 0]]], axis=-1).astype(np.float32)


# G (one target): channel 0 = 1 everywhere, channel 1 = [[-1,0],[2,0]]
G = np.stack([np.ones((2, 2)), [[-1, 0], [2, 0]]], axis=-1).astype(np.float32)[None]


def test_grad_cam_by_hand() -> None:
    # w0 = 1, w1 = (-1 + 0 + 2 + 0) / 4 = 0.25 -> A0 + 0.25 A1
    np.testing.assert_allclose(methods.grad_cam(A, G)[0], [[1.5, 0.5], [0.0, 3.0]])
    np.testing.assert_allclose(methods.grad_cam_weights(G)[0], [1.0, 0.25])


def test_grad_cam_from_pooled_weights_alone() -> None:
    np.testing.assert_allclose(
        methods.compute_maps("gradcam", A, None, np.array([[1.0, 0.25]]))[0], [[1.5, 0.5], [0, 3]]
    )


def test_grad_cam_pp_closed_form_by_hand() -> None:
    # sum A = 4 for both channels. ch0: G = 1 -> alpha = 1/(2 + 4) -> w0 = 4/6.
    # ch1: G = -1 -> relu(G) = 0; G = 0 -> alpha = 0; G = 2 -> alpha = 4/(8 + 32) = 0.1 -> w1 = 0.2
    expected = 2 / 3 * A[..., 0] + 0.2 * A[..., 1]
    np.testing.assert_allclose(methods.grad_cam_pp(A, G)[0], expected, rtol=1e-6)


def test_grad_cam_pp_alpha_is_zero_where_gradient_is_zero() -> None:
    g = np.zeros_like(G)
    assert np.isfinite(methods.grad_cam_pp(A, g)).all()
    assert (methods.grad_cam_pp(A, g) == 0).all()


def test_xgrad_cam_by_hand() -> None:
    # w0 = (1 + 3) / 4 = 1, w1 = (-2) / 4 = -0.5 -> relu(A0 - 0.5 A1) = [[0,0],[0,3]]
    np.testing.assert_allclose(methods.xgrad_cam(A, G)[0], [[0, 0], [0, 3]], atol=1e-6)


def test_hires_cam_by_hand() -> None:
    # sum_k G*A = [[1,0],[0,3]] + [[-2,0],[0,0]] -> relu -> [[0,0],[0,3]]
    np.testing.assert_allclose(methods.hires_cam(A, G)[0], [[0, 0], [0, 3]])


def test_layer_cam_by_hand() -> None:
    # relu(G1) * A1 = [[0,0],[2,0]] * [[2,2],[0,0]] = 0, so only A0 remains
    np.testing.assert_allclose(methods.layer_cam(A, G)[0], [[1, 0], [0, 3]])


def test_normalise_keeps_zero_maps_zero_and_cleans_nan() -> None:
    maps = np.array([np.zeros((2, 2)), [[np.nan, 1.0], [np.inf, 4.0]], [[-1, 2], [0, 1]]], np.float32)
    out = methods.normalise(maps)
    assert np.isfinite(out).all()
    assert (out[0] == 0).all()
    np.testing.assert_allclose(out[1], [[0, 0.25], [0, 1]], atol=1e-6)
    np.testing.assert_allclose(out[2], [[0, 1], [0, 0.5]], atol=1e-6)


def test_methods_say_how_to_export_what_they_need() -> None:
    advice = {"gradients": "--gradients full", "layers": "--layer A --layer B", "saliency": "--input-gradients"}
    advice["guided"] = "--input-gradients"
    for name, method in methods.METHODS.items():
        if method.needs:
            with pytest.raises(methods.MethodNeedsGradientsError, match=advice[min(method.needs)]):
                methods.compute_maps(name, A, None, np.ones((1, 2)))


def test_the_new_methods_by_hand() -> None:
    """Counterfactual, saliency, Guided Grad-CAM and LayerCAM's fusion on maps small enough to check."""
    weights = np.array([[1.0, -2.0]])
    inputs = methods.MapInputs(weights, A)  # A: [2,2,2]
    np.testing.assert_allclose(methods.maps("counterfactual", inputs)[0], np.maximum(-(A @ weights[0]), 0))
    gradient = np.zeros((1, 4, 4, 3))
    gradient[0, 1, 2] = [0.5, -3.0, 1.0]
    np.testing.assert_allclose(methods.maps("saliency", methods.MapInputs(weights, A, saliency=gradient))[0, 1, 2], 3.0)
    guided = np.ones((1, 4, 4, 3))
    coarse = np.array([[[0.0, 0.0], [0.0, 2.0]]])  # the graph's Grad-CAM: hot in the bottom right
    out = methods.maps("guided-gradcam", methods.MapInputs(weights, A, graph_cam=coarse, guided=guided))
    assert out.shape == (1, 4, 4) and out[0, 3, 3] == pytest.approx(1.0) and out[0, 0, 0] == 0.0
    fine, coarse_layer = (np.ones((4, 4, 1)), np.ones((1, 4, 4, 1))), (np.ones((2, 2, 1)), np.ones((1, 2, 2, 1)))
    fused = methods.maps("layercam-fusion", methods.MapInputs(weights, A, gradients=G, layers=(coarse_layer, fine)))
    np.testing.assert_allclose(fused, np.ones((1, 4, 4)), atol=1e-6)  # two flat maps, each scaled to 1


def test_unknown_method_is_named() -> None:
    with pytest.raises(ValueError, match="scorecam"):
        methods.compute_maps("scorecam", A, G)


def test_smoothing_is_an_ema() -> None:
    a, b = np.zeros((1, 2, 2)), np.ones((1, 2, 2))
    np.testing.assert_allclose(smooth_maps(a, b, 0.75), 0.25)
    assert smooth_maps(None, b, 0.75) is b
    assert smooth_maps(np.zeros((2, 2, 2)), b, 0.5) is b
