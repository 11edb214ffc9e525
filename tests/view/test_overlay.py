"""The map laid over the frame: new arrays, the seed's blend, the heat style."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.sources.fitting import Region
from realtime.view.overlay import blend


def test_blend_returns_new_array_and_leaves_inputs_alone() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cam = np.random.default_rng(1).random((14, 14)).astype(np.float32)
    frame_copy, cam_copy = frame.copy(), cam.copy()
    out = blend(frame, cam, 0.4)
    assert out is not frame and not np.shares_memory(out, frame)
    np.testing.assert_array_equal(frame, frame_copy)
    np.testing.assert_array_equal(cam, cam_copy)
    assert not np.array_equal(out, frame)


def test_blend_matches_the_seed_formula() -> None:
    import cv2

    frame = np.full((28, 28, 3), 100, np.uint8)
    cam = np.linspace(0, 1, 14 * 14, dtype=np.float32).reshape(14, 14)
    heat = cv2.applyColorMap(np.uint8(255 * cv2.resize(cam, (28, 28))), cv2.COLORMAP_JET)
    expected = cv2.addWeighted(frame, 0.6, heat, 0.4, 0)
    # the map is quantised to 8 bits before upsampling (3x faster); that moves a pixel by 2 levels at most
    tinted = blend(frame, cam, 0.4, style="tint")
    np.testing.assert_allclose(tinted.astype(int), expected.astype(int), atol=2)


def test_heat_style_leaves_cold_areas_clear_and_tints_hot_ones_by_the_map() -> None:
    frame = np.full((28, 28, 3), 100, np.uint8)
    cam = np.zeros((2, 2), np.float32)
    cam[0, 0] = 1.0  # one hot cell
    out = blend(frame, cam, 0.4, style="heat").astype(int)
    assert (out[20:, 20:] == 100).all()  # far from the hot cell the frame is untouched
    # at the peak: opacity 1.5 x alpha of JET's hottest colour (dark red, BGR (0, 0, 128))
    np.testing.assert_allclose(out[0, 0], 0.4 * 100 + 0.6 * np.array([0, 0, 128]), atol=2)
    with pytest.raises(ValueError, match="plaid"):
        blend(frame, cam, style="plaid")


def test_blend_into_a_region_leaves_the_rest() -> None:
    frame = np.full((40, 80, 3), 50, np.uint8)
    out = blend(frame, np.ones((14, 14), np.float32), 0.5, Region(20, 0, 40, 40))
    assert (out[:, :20] == 50).all() and (out[:, 60:] == 50).all()
    assert not (out[:, 20:60] == 50).all()


def test_nan_and_zero_maps_blend_without_error() -> None:
    frame = np.full((20, 20, 3), 10, np.uint8)
    for cam in (np.full((14, 14), np.nan, np.float32), np.zeros((14, 14), np.float32)):
        out = blend(frame, cam)
        assert out.shape == frame.shape and out.dtype == np.uint8


def test_bad_alpha_is_named() -> None:
    with pytest.raises(ValueError, match=r"1\.5"):
        blend(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2)), 1.5)
