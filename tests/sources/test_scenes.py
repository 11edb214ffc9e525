"""The demo's synthetic scenes and their timeline."""

from __future__ import annotations

import numpy as np

from realtime.sources import scenes
from realtime.sources.demo import DemoScene, Timeline, animal_at


def test_scenes_are_seeded_and_masks_cover_the_animal() -> None:
    a, b = scenes.dataset(6, seed=5, biased=False), scenes.dataset(6, seed=5, biased=False)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
    for scene in a:
        assert scene.image.shape == (224, 224, 3) and scene.mask.shape == (224, 224)
        assert 0.02 < scene.mask.mean() < 0.4
        x, y, w, h = scene.box
        assert scene.mask[y : y + h, x : x + w].sum() == scene.mask.sum()


def test_biased_and_swapped_backgrounds() -> None:
    assert all(s.background == s.label for s in scenes.dataset(10, seed=1, biased=True))
    assert all(s.background != s.label for s in scenes.dataset(10, seed=1, biased=True, swapped=True))
    fair = scenes.dataset(200, seed=1, biased=False)
    matching = np.mean([s.background == s.label for s in fair])
    assert 0.35 < matching < 0.65


def test_demo_timeline_moves_the_animal() -> None:
    timeline = Timeline()
    _, first = animal_at(timeline, 0)
    _, later = animal_at(timeline, 60)
    assert later.cx > first.cx
    scene = DemoScene(timeline)
    frame = scene.frame(10)
    assert frame.image.shape == (480, 640, 3) and frame.mask.any()
    assert scene.frame(timeline.background_frames).background != scene.frame(0).background
