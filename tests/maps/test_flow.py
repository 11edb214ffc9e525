"""Carrying maps along optical flow, and the camera-rate view it gives."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.demo.models import demo_model_paths
from realtime.demo.tracking import track
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.maps import flow
from realtime.sources.demo import DemoScene, Timeline


def textured(shape=(240, 320), seed=0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (shape[0] // 4, shape[1] // 4), dtype=np.uint8)
    return cv2.resize(noise, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[::-1], borderMode=cv2.BORDER_REFLECT)


def blob(shape: tuple[int, int], x: float, y: float, sigma: float = 6.0) -> np.ndarray:
    ys, xs = np.indices(shape)
    return np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_backward_flow_of_a_known_shift() -> None:
    model = textured()
    shown = shift(model, 6, 3)  # the content moved right 6 and down 3
    f = flow.FlowEstimator().backward(shown, model)
    inner = f[40:-40, 40:-40]
    assert np.median(inner[..., 0]) == pytest.approx(-6, abs=0.5)
    assert np.median(inner[..., 1]) == pytest.approx(-3, abs=0.5)


def test_warp_moves_the_map_with_the_content() -> None:
    model = textured()
    shown = shift(model, 8, -4)
    cam = blob(model.shape, 150, 120)
    moved = flow.warp(cam, flow.FlowEstimator().backward(shown, model))
    y, x = np.unravel_index(np.argmax(moved), moved.shape)
    assert (x, y) == (pytest.approx(158, abs=1.5), pytest.approx(116, abs=1.5))


def test_zero_flow_is_identity_and_warp_never_mutates() -> None:
    cam = np.random.default_rng(1).random((24, 32)).astype(np.float32)
    copy = cam.copy()
    np.testing.assert_allclose(flow.warp(cam, np.zeros((24, 32, 2), np.float32)), cam, atol=1e-6)
    np.testing.assert_array_equal(cam, copy)


def test_centroid_and_embed_by_hand() -> None:
    mask = np.zeros((10, 10))
    mask[2:4, 6:8] = 1.0
    assert flow.centroid(mask) == pytest.approx((6.5, 2.5))
    assert flow.centroid(np.zeros((3, 3))) is None
    full = flow.embed(np.ones((2, 2), np.float32), (160, 0, 320, 480), (480, 640), (240, 320))
    assert full[:, :80].max() == 0 and full[:, 240:].max() == 0 and full[:, 80:240].min() == 1


def test_map_centre_uses_cell_centres() -> None:
    from realtime.demo.tracking import map_centre

    cam = np.zeros((4, 4), np.float32)
    cam[1, 2] = 1.0  # covers x 20..29 and y 10..19 of a 40x40 frame
    assert map_centre(cam, (40, 40, 3)) == pytest.approx((24.5, 14.5))
    assert map_centre(np.zeros((4, 4), np.float32), (40, 40, 3)) is None


def test_carrier_warps_smooths_and_detects_cuts() -> None:
    a = cv2.cvtColor(textured(seed=2), cv2.COLOR_GRAY2BGR)
    b = shift(a[..., 0], 6, 0)
    b = cv2.cvtColor(b, cv2.COLOR_GRAY2BGR)
    cam = blob((240, 320), 100, 100)[None]
    warped, stale = flow.MapCarrier(warp_maps=True, width=320), flow.MapCarrier(warp_maps=False, width=320)
    for carrier in (warped, stale):
        carrier.update(a, 0, [cam])
    x_warped = np.unravel_index(np.argmax(warped.carry(b, 1)[0][0]), (240, 320))[1]
    x_stale = np.unravel_index(np.argmax(stale.carry(b, 1)[0][0]), (240, 320))[1]
    assert x_stale == 100 and x_warped == pytest.approx(106, abs=1.5)
    # a cut (an unrelated picture) cannot be explained by flow: the map stays as last shown
    last_shown = warped.carry(b, 1)[0]
    other = cv2.cvtColor(textured(seed=99), cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(warped.carry(other, 2)[0], last_shown)
    assert warped.residual > warped.cut_threshold
    # smoothing: warp the old map into the new model frame first, then blend
    warped.update(b, 3, [np.zeros_like(cam)], smooth=0.5)
    peak_x = np.unravel_index(np.argmax(warped.maps[0][0]), (240, 320))[1]
    assert warped.maps[0].max() == pytest.approx(0.5, abs=0.05) and peak_x == pytest.approx(106, abs=1.5)


@pytest.fixture(scope="module")
def fair() -> LocalEngine:
    return LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=1))


@pytest.mark.parametrize("model_every", [6, 3])  # a 5 and a 10 FPS model on a 30 FPS camera
def test_warped_map_follows_the_animal(fair: LocalEngine, model_every: int) -> None:
    scene = DemoScene()
    results = [track(fair, scene, start, 120, model_every) for start in (0, 150, 300)]
    stale = np.mean([r.stale_tracking_px for r in results])
    warped = np.mean([r.warped_tracking_px for r in results])
    assert warped <= 0.5 * stale, (warped, stale)
    assert np.mean([r.warped_px for r in results]) <= np.mean([r.stale_px for r in results])


def test_warped_map_follows_a_running_animal(fair: LocalEngine) -> None:
    """Animals crossing in 1 s (270-520 px/s), a 5 FPS model: the step-by-step warp keeps up."""
    r = track(fair, DemoScene(Timeline(crossing_frames=30)), 0, 120, 6)
    assert r.warped_tracking_px <= 0.5 * r.stale_tracking_px, r
    assert r.warped_px <= 0.6 * r.stale_px, r  # raw distance: the map's own offset on the animal remains


def test_static_scene_is_no_worse(fair: LocalEngine) -> None:
    r = track(fair, DemoScene(), 40, 30, 6, static=True)
    assert r.frames > 0 and r.warped_px <= r.stale_px + 0.5 and r.warped_tracking_px <= 0.5
