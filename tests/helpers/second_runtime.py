"""The graphs' outputs in OpenVINO's CPU plugin (f32) against onnxruntime's, and the validity every graph owes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from realtime import contract
from realtime.engines.local import contract_feeds
from realtime.export.checks.portable import TENSORRT_OPS
from realtime.export.checks.run import run_onnx
from tests.helpers.optional import needs

TOLERANCE = 1e-4
RELATIVE = ("logits", "activations", "weights", "gradients")  # compared to their largest value


def assert_valid_fp32_graph(path: Path) -> None:
    """onnx.checker (full), the default domain only, only ops TensorRT's parser takes."""
    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path), load_external_data=False).graph
    assert {n.domain for n in graph.node} <= {""}, path
    assert {n.op_type for n in graph.node} <= TENSORRT_OPS, sorted({n.op_type for n in graph.node} - TENSORRT_OPS)


def assert_same_in_openvino(
    path: Path, image: np.ndarray, targets: np.ndarray, gradient_mask: np.ndarray | None = None,
    ours: dict[str, np.ndarray] | None = None,
) -> None:  # fmt: skip
    """Every output within 1e-4 (relative where it has a scale); `gradient_mask` [N,h,w,C] leaves out
    positions where two runtimes may legitimately route a max-pool differently (near-ties). `ours`:
    onnxruntime's outputs on this batch, where the caller has them already."""
    ov = needs("openvino")
    ours = run_onnx(path, image, targets) if ours is None else ours
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    image_input = next(i for i in compiled.inputs if contract.INPUT_IMAGE in i.get_names())
    profile = contract.PROFILE_TRT8 if image_input.get_element_type() == ov.Type.f32 else contract.PROFILE_DEFAULT
    result = compiled(contract_feeds(profile, image, targets))
    for output in compiled.outputs:
        name = next(n for n in output.get_names() if n in ours)  # OpenVINO may also keep an inner name
        theirs, mine = np.asarray(result[output]), ours[name]
        scale = max(float(np.abs(mine).max()), 1e-12) if name in RELATIVE else 1.0
        if name == contract.OUT_GRADIENTS and gradient_mask is not None:
            keep = ~gradient_mask[:, None]
            assert keep.mean() > 0.99, f"{path.name}: too many near-ties to compare"
            theirs, mine = theirs * keep, mine * keep
        assert np.abs(theirs - mine).max() <= TOLERANCE * scale, f"{path.name} {name}"


def near_ties(activations: np.ndarray, pool: int = 2, rel: float = 1e-3) -> np.ndarray:
    """Positions of [N,h,w,C] maps whose pool window holds another value within `rel` of the window's max.

    The float32 forward of two runtimes differs by about 1e-5 relative after 13 VGG convolutions, enough
    to move a max-pool's first maximum between two values that close; the channel weights do not change.
    """
    n, h, w, c = activations.shape
    hc, wc = h // pool * pool, w // pool * pool
    blocks = activations[:, :hc, :wc].reshape(n, h // pool, pool, w // pool, pool, c)
    top = blocks.max(axis=(2, 4), keepdims=True)
    close = (np.abs(blocks - top) <= rel * np.abs(top)) & (top > 0)
    tied = close.sum(axis=(2, 4), keepdims=True) > 1
    mask = np.zeros(activations.shape, bool)
    mask[:, :hc, :wc] = np.broadcast_to(tied, blocks.shape).reshape(n, hc, wc, c)
    return mask
