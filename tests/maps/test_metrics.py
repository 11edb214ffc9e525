"""Scoring maps: pointing, mass, deletion and insertion, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.maps import metrics


def test_pointing_and_mass_by_hand() -> None:
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    sal = np.zeros((4, 4))
    sal[1, 1], sal[0, 0] = 3.0, 1.0
    assert metrics.pointing_hit(sal, mask)
    assert metrics.mass_inside(sal, mask) == pytest.approx(0.75)
    assert not metrics.pointing_hit(np.zeros((4, 4)), mask)  # an all-zero map points nowhere
    assert metrics.mass_inside(np.zeros((4, 4)), mask) == 0.0


def test_auc_by_trapezoid() -> None:
    assert metrics.auc(np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert metrics.auc(np.array([1.0, 1.0, 0.0])) == pytest.approx(0.75)


def test_causal_images_end_points() -> None:
    image = np.random.default_rng(0).integers(1, 256, (8, 8, 3), dtype=np.uint8)
    order = metrics.pixel_order(np.arange(64, dtype=np.float32).reshape(8, 8))
    deletion = metrics.causal_images(image, order, 4, "deletion")
    np.testing.assert_array_equal(deletion[0], image)
    assert (deletion[-1] == 0).all()
    assert (deletion[1].reshape(-1, 3)[order[:16]] == 0).all()
    insertion = metrics.causal_images(image, order, 4, "insertion", blur_sigma=2.0)
    np.testing.assert_array_equal(insertion[-1], image)
    assert not np.array_equal(insertion[0], image)


def test_deletion_rewards_a_map_on_the_evidence() -> None:
    image = np.full((16, 16, 3), 100, np.uint8)
    image[4:8, 4:8] = 250  # the "object"

    def score(batch: np.ndarray) -> np.ndarray:  # probability = share of the object still visible
        return (batch[:, 4:8, 4:8, 0] == 250).mean(axis=(1, 2))

    good = np.zeros((16, 16))
    good[4:8, 4:8] = 1.0
    good_del, good_ins = metrics.deletion_insertion(image, good, score, steps=16)
    noise = metrics.random_map((16, 16), np.random.default_rng(0))
    rand_del, rand_ins = metrics.deletion_insertion(image, noise, score)
    assert good_del < rand_del and good_ins > rand_ins
