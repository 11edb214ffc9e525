"""Frame hygiene, fitting, and drawing that never touches its inputs."""

import numpy as np
import pytest

from realtime import overlay
from realtime.caption import draw_hud
from realtime.frames import BadFrameError, Region, fit, model_region, to_bgr


@pytest.mark.parametrize(
    "frame",
    [
        np.full((31, 17), 200, np.uint8),  # grey, odd size
        np.full((31, 17, 1), 200, np.uint8),
        np.full((31, 17, 4), 200, np.uint8),  # BGRA
        np.full((31, 17, 3), 200 * 257, np.uint16),
        np.full((31, 17, 3), 200 / 255, np.float32),
    ],
)
def test_odd_frames_become_bgr_uint8(frame: np.ndarray) -> None:
    out = to_bgr(frame)
    assert out.shape == (31, 17, 3) and out.dtype == np.uint8
    assert abs(int(out[0, 0, 0]) - 200) <= 1


@pytest.mark.parametrize("frame", [np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros(5, np.uint8)])
def test_unusable_frames_raise_bad_frame(frame: np.ndarray) -> None:
    with pytest.raises(BadFrameError):
        to_bgr(frame)


def test_nan_float_frame_does_not_poison_output() -> None:
    frame = np.full((4, 4, 3), np.nan, np.float32)
    assert (to_bgr(frame) == 0).all()


def test_fit_squash_and_center() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :80] = 255  # a white band that a centre crop cuts off
    assert fit(frame, (224, 224), "squash").shape == (224, 224, 3)
    assert model_region(frame.shape, (224, 224), "center") == Region(80, 0, 480, 480)
    centre = fit(frame, (224, 224), "center")
    assert centre.shape == (224, 224, 3) and centre.max() == 0
    assert fit(np.zeros((7, 13, 3), np.uint8), (224, 224)).shape == (224, 224, 3)
    with pytest.raises(ValueError, match="stretch"):
        fit(frame, (224, 224), "stretch")


def test_blend_returns_new_array_and_leaves_inputs_alone() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cam = np.random.default_rng(1).random((14, 14)).astype(np.float32)
    frame_copy, cam_copy = frame.copy(), cam.copy()
    out = overlay.blend(frame, cam, 0.4)
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
    tinted = overlay.blend(frame, cam, 0.4, style="tint")
    np.testing.assert_allclose(tinted.astype(int), expected.astype(int), atol=2)


def test_heat_style_leaves_cold_areas_clear_and_tints_hot_ones_by_the_map() -> None:
    frame = np.full((28, 28, 3), 100, np.uint8)
    cam = np.zeros((2, 2), np.float32)
    cam[0, 0] = 1.0  # one hot cell
    out = overlay.blend(frame, cam, 0.4, style="heat").astype(int)
    assert (out[20:, 20:] == 100).all()  # far from the hot cell the frame is untouched
    # at the peak: opacity 1.5 x alpha of JET's hottest colour (dark red, BGR (0, 0, 128))
    np.testing.assert_allclose(out[0, 0], 0.4 * 100 + 0.6 * np.array([0, 0, 128]), atol=2)
    with pytest.raises(ValueError, match="plaid"):
        overlay.blend(frame, cam, style="plaid")


def test_blend_into_a_region_leaves_the_rest() -> None:
    frame = np.full((40, 80, 3), 50, np.uint8)
    out = overlay.blend(frame, np.ones((14, 14), np.float32), 0.5, Region(20, 0, 40, 40))
    assert (out[:, :20] == 50).all() and (out[:, 60:] == 50).all()
    assert not (out[:, 20:60] == 50).all()


def test_nan_and_zero_maps_blend_without_error() -> None:
    frame = np.full((20, 20, 3), 10, np.uint8)
    for cam in (np.full((14, 14), np.nan, np.float32), np.zeros((14, 14), np.float32)):
        out = overlay.blend(frame, cam)
        assert out.shape == frame.shape and out.dtype == np.uint8


def test_the_caption_goes_under_the_frame_and_covers_nothing() -> None:
    frame = np.zeros((240, 320, 3), np.uint8)
    hud = overlay.Hud("tabby", 0.5, "gradcam", [("tabby", 0.5), ("lynx", 0.2)], 10.0, 90.0, 120.0)
    out = draw_hud(frame, hud)
    assert frame.max() == 0
    assert out.shape[1] == 320 and out.shape[0] > 240
    assert out[:240].max() == 0 and out[240:].max() > 0  # the picture is untouched, the band drawn
    assert "tabby 50.0%" in overlay.hud_lines(hud)[0]
    assert "10.0 FPS" in overlay.hud_lines(hud)[1]


def test_the_caption_has_no_figures_before_they_are_measured() -> None:
    first = overlay.Hud("tabby", 0.5, "gradcam")
    assert overlay.hud_lines(first) == ["tabby 50.0%  [gradcam]"]
    later = overlay.Hud("tabby", 0.5, "gradcam", model_ms=90.0)
    assert overlay.hud_lines(later)[1] == "model 90.0 ms"  # no "0.0 FPS", no "latency 0.0 ms"


def test_the_colour_scale_runs_from_cold_to_hot() -> None:
    bar = overlay.colour_scale(64, 4)
    assert bar[0, 0, 0] > bar[0, 0, 2] and bar[0, -1, 2] > bar[0, -1, 0]  # blue on the left, red on the right


def test_bad_alpha_is_named() -> None:
    with pytest.raises(ValueError, match=r"1\.5"):
        overlay.blend(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2)), 1.5)


def test_fast_downscale_stays_close_to_area_resampling() -> None:
    import cv2

    from realtime.demo.live import DemoScene

    frame = DemoScene().frame(20).image  # 640x480: two pyramid halvings' worth of detail
    fast = fit(frame, (224, 224)).astype(float)
    area = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(fast - area).mean() < 2.0
