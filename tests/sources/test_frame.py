"""Frame hygiene and fitting frames to the model's input."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.sources.fitting import Region, fit, model_region
from realtime.sources.frame import BadFrameError, to_bgr


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


def test_fast_downscale_stays_close_to_area_resampling() -> None:
    import cv2

    from realtime.sources.demo import DemoScene

    frame = DemoScene().frame(20).image  # 640x480: two pyramid halvings' worth of detail
    fast = fit(frame, (224, 224)).astype(float)
    area = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(fast - area).mean() < 2.0
