"""Captions: under the picture, readable, nothing overlapping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.view.caption import colour_scale, draw_hud
from realtime.view.hud import Hud, hud_lines


def test_the_caption_goes_under_the_frame_and_covers_nothing() -> None:
    frame = np.zeros((240, 320, 3), np.uint8)
    hud = Hud("tabby", 0.5, "gradcam", [("tabby", 0.5), ("lynx", 0.2)], 10.0, 90.0, 120.0)
    out = draw_hud(frame, hud)
    assert frame.max() == 0
    assert out.shape[1] == 320 and out.shape[0] > 240
    assert out[:240].max() == 0 and out[240:].max() > 0  # the picture is untouched, the band drawn
    assert "tabby 50.0%" in hud_lines(hud)[0]
    assert "10.0 FPS" in hud_lines(hud)[1]


def test_the_caption_has_no_figures_before_they_are_measured() -> None:
    first = Hud("tabby", 0.5, "gradcam")
    assert hud_lines(first) == ["tabby 50.0%  [gradcam]"]
    later = Hud("tabby", 0.5, "gradcam", model_ms=90.0)
    assert hud_lines(later)[1] == "model 90.0 ms"  # no "0.0 FPS", no "latency 0.0 ms"


def test_the_colour_scale_runs_from_cold_to_hot() -> None:
    bar = colour_scale(64, 4)
    assert bar[0, 0, 0] > bar[0, 0, 2] and bar[0, -1, 2] > bar[0, -1, 0]  # blue on the left, red on the right


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("window", [320, 640, 1280, 1920, 2560, 3840])
def test_no_caption_text_overlaps_or_leaves_its_band(window: int) -> None:
    """From the drawing code's own boxes: every window width, 1 to 4 panels side by side, top-k 1 to 5,
    the longest status line gradcam-live writes (camera rate) and long class names."""
    from realtime.view.caption import caption_layout
    from realtime.view.hud import Hud

    top = [("a very long class name indeed, longer than any panel", 0.61), ("tabby cat", 0.2), ("lynx", 0.05)]
    for panels in range(1, 5):
        for top_k in range(1, 6):
            width = window // (panels * top_k)
            hud = Hud("Egyptian cat, the explained class of this panel", 0.7, "gradcam++", top, 30.6, 483.9, 32.0,
                      2.0, 2, ("no class 'penguin' in this model",))  # fmt: skip
            layout = caption_layout(width, hud)
            boxes = layout.boxes()
            for box in boxes:
                assert 0 <= box[0] <= box[2] <= width and 0 <= box[1] <= box[3] <= layout.height, (width, box)
            for i, a in enumerate(boxes):
                for b in boxes[i + 1 :]:
                    assert not _overlap(a, b), (width, a, b)
            if width >= 120:  # shortened, not dropped
                assert layout.texts[0].text.startswith("Egyptian"), (width, layout.texts[0])


@pytest.mark.parametrize("panel", [(640, 480), (1280, 720), (1920, 1080)])
def test_caption_text_is_readable_from_the_back_of_the_room(panel: tuple[int, int]) -> None:
    """The window scales the whole picture to the screen, so what counts is the text's height against
    the picture's: at least 2.5% of the panel with its caption (27 px of a 1080p projector)."""
    from realtime.view.caption import caption_layout
    from realtime.view.hud import Hud
    from realtime.view.text import FONT, thickness

    layout = caption_layout(panel[0], Hud("tabby", 0.9, "gradcam", [("tabby", 0.9)], 30.0, 12.0, 40.0))
    first = layout.texts[0]
    cap_height = cv2.getTextSize("T", FONT, first.scale, thickness(first.scale))[0][1]
    assert cap_height >= 0.025 * (panel[1] + layout.height), (cap_height, panel[1] + layout.height)
