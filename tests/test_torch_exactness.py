"""Any ONNX classifier in: torchvision and timm exports against torch autograd, and in a second runtime.

Seeded random weights (no downloads). Each model is exported once with
torch.onnx.export, then through gradcam-export --onnx in both variants.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.conftest import needs
from tests.torch_models import CASES, build_model, export_onnx, reference

torch = needs("torch")
needs("torchvision")
needs("timm")

from realtime import contract  # noqa: E402
from realtime.export.checks import TENSORRT_OPS, run_onnx  # noqa: E402
from realtime.export.contract_graph import PRESETS, preprocess_numpy  # noqa: E402
from realtime.export.exporter import ExportConfig, export  # noqa: E402

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
            ref = reference(case, model, x, targets)
            for gradients, path in paths.items():
                got = run_onnx(path, image, targets)
                where = f"{name} {gradients} batch {batch} targets {targets.tolist()}"
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
    ov = needs("openvino")
    case, _, paths = exported
    name = case.name
    image = _images(3, case.size, seed=11)
    targets = np.array([[-1, 3], [2, -1], [-1, -1]], np.int64)
    core = ov.Core()
    for gradients, path in paths.items():
        onnx.checker.check_model(str(path), full_check=True)
        graph = onnx.load(str(path), load_external_data=False).graph
        assert {n.domain for n in graph.node} <= {""}, gradients
        assert {n.op_type for n in graph.node} <= TENSORRT_OPS, gradients
        got = run_onnx(path, image, targets)
        compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        result = compiled({contract.INPUT_IMAGE: image, contract.INPUT_TARGETS: targets})
        for output in compiled.outputs:
            name_ = output.get_any_name()
            theirs, ours = np.asarray(result[output]), got[name_]
            relative = name_ in ("logits", "activations", "weights", "gradients")
            scale = max(float(np.abs(ours).max()), 1e-12) if relative else 1.0
            if (
                name_ == "gradients" and case.max_pool_head
            ):  # max-pool routing may differ where two runtimes' activations nearly tie
                keep = ~_near_ties(got["activations"])[:, None]
                assert keep.mean() > 0.99, f"{name}: too many near-ties to compare"
                theirs, ours = theirs * keep, ours * keep
            assert np.abs(theirs - ours).max() <= TOLERANCE * scale, f"{name} {gradients} {name_}"


def _near_ties(activations: np.ndarray, pool: int = 2, rel: float = 1e-3) -> np.ndarray:
    """Positions of [N,h,w,C] maps whose 2x2 pool window holds another value within `rel` of the window's max.

    The float32 forward of two runtimes differs by about 1e-5 relative after 13 VGG convolutions, enough
    to move a max-pool's first maximum between two values that close; the channel weights do not change.
    """
    n, h, w, c = activations.shape
    blocks = activations[:, : h // pool * pool, : w // pool * pool].reshape(n, h // pool, pool, w // pool, pool, c)
    top = blocks.max(axis=(2, 4), keepdims=True)
    close = (np.abs(blocks - top) <= rel * np.abs(top)) & (top > 0)
    tied = close.sum(axis=(2, 4), keepdims=True) > 1
    mask = np.zeros(activations.shape, bool)
    mask[:, : h // pool * pool, : w // pool * pool] = np.broadcast_to(tied, blocks.shape).reshape(
        n, h // pool * pool, w // pool * pool, c
    )
    return mask
