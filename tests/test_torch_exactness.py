"""Any ONNX classifier in: torchvision and timm exports against torch autograd, and in a second runtime.

Seeded random weights (no downloads). Each model is exported once with
torch.onnx.export, then through gradcam-export --onnx in both variants.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import needs
from tests.torch_models import CASES, build_model, export_onnx, reference

torch = needs("torch")
needs("torchvision")
needs("timm")

from realtime.export.checks.run import run_onnx  # noqa: E402
from realtime.export.pipeline import ExportConfig, export  # noqa: E402
from realtime.export.preprocessing import PRESETS, preprocess_numpy  # noqa: E402
from tests.second_runtime import assert_same_in_openvino, assert_valid_fp32_graph, near_ties  # noqa: E402

TOLERANCE = 1e-4
TARGETS = {
    1: [np.array([[-1]], np.int64), np.array([[7, -1]], np.int64)],
    3: [np.array([[-1], [-1], [-1]], np.int64), np.array([[-1, 5], [7, -1], [999, 0]], np.int64)],
}


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    """(case, torch model, {'full': path, 'pooled': path}); pytest runs every test of one model in a row."""
    case = CASES[request.param]
    folder = tmp_path_factory.mktemp(case.name)
    model = build_model(case)
    source = export_onnx(model, folder / f"{case.name}.onnx", case.size)
    paths = {}
    for gradients in ("full", "pooled"):
        config = ExportConfig(
            onnx=source, gradients=gradients, output=folder / f"{case.name}_{gradients}.onnx", quiet=True
        )
        paths[gradients] = export(config).output
    source.unlink()
    yield case, model, paths
    for path in paths.values():
        path.unlink()


def _images(batch: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def test_matches_torch_autograd(exported) -> None:
    case, model, paths = exported
    name = case.name
    for batch, target_sets in TARGETS.items():
        image = _images(batch, case.size, seed=batch)
        x = preprocess_numpy(image, PRESETS["torch"], "NCHW")
        for targets in target_sets:
            for gradients, path in paths.items():
                got = run_onnx(path, image, targets)
                ref = reference(case, model, x, targets, at=got["activations"])  # the graph's kinks
                where = f"{name} {gradients} batch {batch} targets {targets.tolist()}"
                peak = np.abs(ref["body_activations"]).max()
                assert np.abs(got["activations"] - ref["body_activations"]).max() <= TOLERANCE * peak, where
                scale = np.abs(ref["logits"]).max()
                assert np.abs(got["logits"] - ref["logits"]).max() <= TOLERANCE * scale, where
                np.testing.assert_array_equal(got["classes"], ref["classes"], err_msg=where)
                assert np.abs(got["weights"] - ref["weights"]).max() <= TOLERANCE, where
                assert np.abs(got["cam"] - ref["cam"]).max() <= TOLERANCE, where
                if gradients == "full":
                    peak = np.abs(ref["gradients"]).max()
                    assert np.abs(got["gradients"] - ref["gradients"]).max() <= TOLERANCE * peak, where


def test_same_answer_in_openvino_and_valid_graphs(exported) -> None:
    """OpenVINO's CPU plugin at f32 as the second runtime; every graph valid and TensorRT-parsable."""
    case, _, paths = exported
    image = _images(3, case.size, seed=11)
    targets = np.array([[-1, 3], [2, -1], [-1, -1]], np.int64)
    for path in paths.values():
        assert_valid_fp32_graph(path)
        mask = near_ties(run_onnx(path, image, targets)["activations"]) if case.max_pool_head else None
        assert_same_in_openvino(path, image, targets, mask)


def test_live_view_records_a_resnet50_export(tmp_path) -> None:
    """gradcam-live --model <torchvision ResNet50 export> --source clip.mp4 --no-window --record out.mp4."""
    from realtime import cli
    from tests.conftest import count_frames, write_video

    source = export_onnx(build_model(CASES["resnet50"]), tmp_path / "resnet50.onnx")
    model = export(ExportConfig(onnx=source, gradients="pooled", output=tmp_path / "r50.onnx", quiet=True)).output
    clip, out = write_video(tmp_path / "clip.mp4", 8), tmp_path / "out.mp4"
    argv = ["--model", str(model), "--source", str(clip), "--no-window", "--record", str(out), "--providers", "cpu"]
    assert cli.main(argv) == 0
    assert count_frames(out) == 8
