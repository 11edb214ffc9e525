"""torchvision and timm models through --onnx, against torch autograd."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.helpers.graph_values import graph_values
from tests.helpers.optional import needs
from tests.helpers.torch_models import CASES, build_model, export_onnx, reference

needs("torchvision")
needs("timm")
from realtime.export.checks.run import GraphRunner, run_onnx  # noqa: E402
from realtime.export.pipeline import ExportConfig, export, export_forward, import_onnx  # noqa: E402
from realtime.export.preprocessing import PRESETS, preprocess_numpy  # noqa: E402
from tests.helpers.second_runtime import assert_same_in_openvino, assert_valid_fp32_graph, near_ties  # noqa: E402
from tests.helpers.torch_routing import guided_relu_masks_from, of_type, relu_output_or_pool_input, route_pools  # noqa: E402

torch = needs("torch")


TOLERANCE = 1e-4


TARGETS = {
    1: [np.array([[-1]], np.int64), np.array([[7, -1]], np.int64)],
    3: [np.array([[-1], [-1], [-1]], np.int64), np.array([[-1, 5], [7, -1], [999, 0]], np.int64)],
}


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    """(case, torch model, {'full': path, 'pooled': path}); pytest runs every test of one model in a row.

    VGG16's full graph also carries guided backpropagation to the input, for the test against
    pytorch-grad-cam below: one VGG16 export fewer in the suite.
    """
    case = CASES[request.param]
    folder = tmp_path_factory.mktemp(case.name)
    model = build_model(case)
    source = export_onnx(model, folder / f"{case.name}.onnx", case.size)
    forward = import_onnx(ExportConfig(onnx=source))  # one import serves both graphs
    paths = {}
    for gradients in ("full", "pooled"):
        guided = "guided" if case.name == "vgg16" and gradients == "full" else ""
        config = ExportConfig(
            onnx=source, gradients=gradients, input_gradients=guided, output=folder / f"{case.name}_{gradients}.onnx",
            quiet=True,
        )  # fmt: skip
        paths[gradients] = export_forward(forward.copy(), config).output
    del forward
    source.unlink()
    yield case, model, paths
    for path in paths.values():
        path.unlink()


def _images(batch: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def test_matches_torch_autograd(exported) -> None:
    case, model, paths = exported
    name = case.name
    runners = {gradients: GraphRunner(path) for gradients, path in paths.items()}  # a session each, not a run each
    for batch, target_sets in TARGETS.items():
        image = _images(batch, case.size, seed=batch)
        x = preprocess_numpy(image, PRESETS["torch"], "NCHW")
        body = None  # torch's own forward of this batch, once
        for targets in target_sets:
            for gradients, run in runners.items():
                got = run(image, targets)
                ref = reference(case, model, x, targets, at=got["activations"], body_activations=body)  # its kinks
                body = ref["body_activations"]
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
        ours = run_onnx(path, image, targets)
        mask = near_ties(ours["activations"]) if case.max_pool_head else None
        assert_same_in_openvino(path, image, targets, mask, ours=ours)


@pytest.mark.parametrize("exported", ["vgg16"], indirect=True)
def test_guided_backprop_matches_pytorch_grad_cam_on_vgg16(exported) -> None:
    """Guided backpropagation to the input of torchvision VGG16, against pytorch-grad-cam's own model; its
    ReLU and max-pool decisions taken from the graph's forward (tests/torch_routing.py)."""
    grad_cam = needs("pytorch_grad_cam")
    _, model, paths = exported
    graph = paths["full"]
    image = np.random.default_rng(3).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    targets = np.array([[-1, 11]], np.int64)
    x = preprocess_numpy(image, PRESETS["torch"], "NCHW")
    got, decisions = graph_values(graph, image, targets, relu_output_or_pool_input)  # one run serves every target
    routed = route_pools(copy.deepcopy(model), of_type("MaxPool", decisions))
    guided = grad_cam.GuidedBackpropReLUModel(routed, device=torch.device("cpu"))
    for k in range(2):
        with guided_relu_masks_from(of_type("Relu", decisions), grad_cam):
            want = guided(torch.from_numpy(x).clone(), target_category=int(got["classes"][0, k]))  # [H,W,3]
        error = np.abs(got["guided"][0, k] - want).max() / np.abs(want).max()
        assert error <= TOLERANCE, f"guided backprop, target {k}: {error:.2e} relative"


def test_live_view_records_a_resnet50_export(tmp_path) -> None:
    """gradcam-live --model <torchvision ResNet50 export> --source clip.mp4 --no-window --record out.mp4."""
    from realtime.live import cli
    from tests.helpers.video import count_frames, write_video

    source = export_onnx(build_model(CASES["resnet50"]), tmp_path / "resnet50.onnx")
    model = export(ExportConfig(onnx=source, gradients="pooled", output=tmp_path / "r50.onnx", quiet=True)).output
    clip, out = write_video(tmp_path / "clip.mp4", 8), tmp_path / "out.mp4"
    argv = ["--model", str(model), "--source", str(clip), "--no-window", "--record", str(out), "--providers", "cpu"]
    assert cli.main(argv) == 0
    assert count_frames(out) == 8
