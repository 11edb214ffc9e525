"""Offline demo: scenes, metrics, the committed biased/fair models, and the demo command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from realtime import cli
from realtime.demo import metrics, scenes
from realtime.demo.evaluate import evaluate
from realtime.demo.live import DemoScene, Timeline, animal_at
from realtime.demo.models import demo_model_paths
from realtime.engine import Engine, EngineOptions
from tests.conftest import count_frames


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


def test_demo_timeline_moves_the_animal() -> None:
    timeline = Timeline()
    _, first = animal_at(timeline, 0)
    _, later = animal_at(timeline, 60)
    assert later.cx > first.cx
    scene = DemoScene(timeline)
    frame = scene.frame(10)
    assert frame.image.shape == (480, 640, 3) and frame.mask.any()
    assert scene.frame(timeline.background_frames).background != scene.frame(0).background


@pytest.fixture(scope="module")
def reports():
    paths = demo_model_paths()
    # 28 seeded scenes (was 40, for the suite's time): the same margins, e.g. the fair model's pointing
    # game 0.96 against 0.90 asked, its deletion AUC 0.57 against 0.67 for random maps. Grad-CAM and the
    # two baselines only (the claims below are about them): the other methods' deletion curves were 3/4
    # of this fixture's time; gradcam-eval still scores every method
    return {
        name: evaluate(path, name, n_scenes=28, seed=1000, steps=10, methods=("gradcam",))
        for name, path in paths.items()
    }


def test_fair_model_looks_at_the_animal(reports) -> None:
    fair = reports["fair"]
    assert fair.all.accuracy >= 0.95 and fair.swapped.accuracy >= 0.95
    assert fair.all.pointing["gradcam"] >= 0.90
    assert fair.all.deletion["gradcam"] < min(fair.all.deletion["random"], fair.all.deletion["centre"])
    assert fair.all.insertion["gradcam"] > max(fair.all.insertion["random"], fair.all.insertion["centre"])


def test_biased_model_is_fooled_and_looks_at_the_background(reports) -> None:
    biased = reports["biased"]
    assert biased.matching.accuracy >= 0.95
    assert biased.swapped.accuracy <= 0.60
    assert 1.0 - biased.matching.mass_inside["gradcam"] >= 0.60


def test_committed_models_are_small_and_follow_the_contract() -> None:
    for path in demo_model_paths().values():
        assert path.stat().st_size < 3 * 1024 * 1024
        engine = Engine(path, EngineOptions(providers="cpu", warmup=0))
        assert engine.info.labels == scenes.CLASSES and engine.has_gradients
        assert engine.info.preprocessing == "tf"


def test_training_script_runs(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from scripts import train_demo_models

    assert train_demo_models.main(["--quick", "--out", str(tmp_path), "--only", "fair"]) == 0
    engine = Engine(tmp_path / "fair.onnx", EngineOptions(providers="cpu", warmup=0))
    assert engine.info.labels == scenes.CLASSES and engine.info.layer == "last_conv"


def test_demo_command_writes_a_video_headless(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.mp4"
    assert cli.main(["--demo", "--max-frames", "12", "--record", str(out), "--providers", "cpu", "--no-window"]) == 0
    assert count_frames(out) == 12
    assert "video written to" in capsys.readouterr().err
