"""The Python API (realtime.api): GradCam and its frozen Explanation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from realtime import GradCam, contract
from realtime.maps import methods
from realtime.maps.query import ClassNameError
from realtime.sources.fitting import fit
from tests.helpers.classifiers import LABELS


def test_gradcam_explains_a_frame_like_the_graph_and_the_numpy_methods(small_models) -> None:
    explainer = GradCam(small_models["full"], providers="cpu")
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    result = explainer(frame, method="gradcam++", top_k=3)
    raw = explainer.engine.run(fit(frame, (64, 64))[None], [[-1, -1, -1]])  # the graph, by hand
    assert result.classes == tuple(int(c) for c in raw.classes[0])
    assert result.labels == tuple(LABELS[c] for c in result.classes)
    assert result.probabilities[0] == pytest.approx(float(raw.probabilities[0].max()), rel=1e-5)
    assert raw.activations is not None and raw.gradients is not None
    expected = methods.normalise(methods.grad_cam_pp(raw.activations[0], raw.gradients[0]))
    np.testing.assert_allclose(result.maps, expected, atol=1e-5)
    assert result.maps.shape == raw.cam[0].shape and result.method == "gradcam++"


def test_overlay_is_a_new_array_and_the_result_is_frozen(small_models) -> None:
    explainer = GradCam(small_models["pooled"], providers="cpu")
    frame = np.full((50, 70, 3), 90, np.uint8)
    before = frame.copy()
    result = explainer(frame)
    shown = result.overlay(frame, alpha=0.4)
    assert shown.shape == frame.shape and not np.shares_memory(shown, frame)
    np.testing.assert_array_equal(frame, before)
    with pytest.raises(AttributeError):
        result.method = "x"  # type: ignore[misc]


def test_a_target_by_name_and_clear_errors(small_models) -> None:
    explainer = GradCam(small_models["pooled"], providers="cpu")
    frame = np.zeros((64, 64, 3), np.uint8)
    assert explainer(frame, target="snow leopard").classes == (3,)
    assert explainer(frame, target=2).labels == ("bird",)
    with pytest.raises(ClassNameError, match="did you mean"):
        explainer(frame, target="snow leopar")
    with pytest.raises(methods.MethodNeedsGradientsError, match="--gradients full"):
        explainer(frame, method="layercam")
    assert explainer.methods == ["gradcam", "counterfactual"]  # the two that need only the channel weights


def test_api_errors_name_its_arguments_and_the_export_that_fits_the_path(small_models, tmp_path: Path) -> None:
    """The API speaks of its own arguments (target=, layer=), not of gradcam-live's flags, and a missing
    model gets the gradcam-export line that writes that very path."""
    from realtime.engines.graph_file import ModelNotFoundError

    explainer = GradCam(small_models["pooled"], providers="cpu")
    frame = np.zeros((64, 64, 3), np.uint8)
    for bad in ("not a class", 99):
        with pytest.raises(ClassNameError) as caught:
            explainer(frame, target=bad)
        assert str(caught.value).startswith("target ") and "--class" not in str(caught.value)
    with pytest.raises(ValueError, match=r"^layer=3: "):
        explainer(frame, layer=3)
    with pytest.raises(ModelNotFoundError) as caught:
        GradCam(tmp_path / "resnet50_gradcam_pooled_int8.onnx")
    assert f"gradcam-export --onnx resnet50.onnx --gradients pooled --int8 --output {tmp_path}" in str(caught.value)
    assert "--weights imagenet" not in str(caught.value)
    with pytest.raises(ModelNotFoundError, match="gradcam-export --weights imagenet --gradients full --output"):
        GradCam(tmp_path / "vgg16_gradcam_full.onnx")


def test_a_batch_is_one_call_with_the_same_answers(small_models) -> None:
    explainer = GradCam(small_models["full"], providers="cpu")
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    together = explainer.batch(frames, method="layercam")
    for frame, result in zip(frames, together, strict=True):
        alone = explainer(frame, method="layercam")
        assert alone.classes == result.classes
        np.testing.assert_allclose(alone.maps, result.maps, atol=1e-5)


def test_the_api_checks_its_arguments_and_its_results_are_frozen() -> None:
    from realtime import GradCam
    from realtime.demo.models import demo_model_paths

    gc = GradCam(demo_model_paths()["fair"], providers="cpu", warmup=0)
    frame = np.full((224, 224, 3), 100, np.uint8)
    with pytest.raises(ValueError, match="at least one frame"):
        gc.batch([])
    for bad in (0, -1, True, 1.5, contract.MAX_TARGETS + 1):
        with pytest.raises(ValueError, match="top_k"):
            gc(frame, top_k=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads"):
        GradCam(demo_model_paths()["fair"], providers="cpu", threads=10**6)
    explained = gc(frame, top_k=2)
    assert explained.maps.shape[0] == 2 and not explained.maps.flags.writeable
    with pytest.raises(ValueError):
        explained.maps[0, 0, 0] = 1.0
