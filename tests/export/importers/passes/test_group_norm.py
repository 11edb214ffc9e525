"""GroupNormalization (opset 21's scale per channel, opset 18's per group) rewritten as torch writes a GroupNorm:
the same values as onnxruntime's own op, and a graph holding it explained down to the input as torch autograd
differentiates nn.GroupNorm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from realtime.export.graph.session import cpu_session
from realtime.export.importers.passes.group_norm import group_norms_as_instance_norms
from tests.helpers.optional import needs
from tests.helpers.torch_export import assert_saliency_matches_torch

torch = needs("torch")


def _model(opset: int) -> tuple[onnx.ModelProto, object]:
    """Conv, GroupNormalization (2 groups of 4 channels), Tanh, pooling and a dense layer, as ONNX written by
    hand from a torch model's weights, and that torch model."""
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GroupNorm(2, 8), torch.nn.Tanh()]
    net = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    norm = net[1]
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 8) if opset == 21 else torch.tensor([0.7, 1.3]).repeat_interleave(4))
        norm.bias.copy_(torch.linspace(-0.3, 0.3, 8) if opset == 21 else torch.tensor([0.2, -0.1]).repeat_interleave(4))
    scale = norm.weight.detach().numpy() if opset == 21 else norm.weight.detach().numpy()[::4].copy()
    bias = norm.bias.detach().numpy() if opset == 21 else norm.bias.detach().numpy()[::4].copy()
    weights = {"w": net[0].weight, "cb": net[0].bias, "fw": net[5].weight, "fb": net[5].bias}
    inits = [numpy_helper.from_array(v.detach().numpy(), k) for k, v in weights.items()]
    inits += [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(bias, "bias")]
    nodes = [
        helper.make_node("Conv", ["x", "w", "cb"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("GroupNormalization", ["c", "scale", "bias"], ["g"], num_groups=2, epsilon=1e-5, name="gn"),
        helper.make_node("Tanh", ["g"], ["t"], name="tanh"),
        helper.make_node("GlobalAveragePool", ["t"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1, name="dense"),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 16, 16])
    logits = helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph(nodes, "gn", [x], [logits], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10), net


@pytest.mark.parametrize("opset", [18, 21])
def test_the_rewrite_gives_onnxruntimes_values(opset: int) -> None:
    model, net = _model(opset)
    x = np.random.default_rng(1).normal(size=(2, 3, 16, 16)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    if opset == 21:  # onnxruntime runs opset 21's op itself; opset 18's is checked against torch only
        np.testing.assert_allclose(cpu_session(model).run(None, {"x": x})[0], expected, rtol=1e-4, atol=1e-5)
    assert group_norms_as_instance_norms(model) == 1
    assert "GroupNormalization" not in {n.op_type for n in model.graph.node}
    np.testing.assert_allclose(cpu_session(model).run(None, {"x": x})[0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [18, 21])
def test_a_group_norm_graph_is_explained_as_torch_autograd_says(opset: int, tmp_path: Path) -> None:
    needs("onnxscript")
    from realtime.export.pipeline import ExportConfig, export

    model, net = _model(opset)
    onnx.save(model, str(tmp_path / "gn.onnx"))
    result = export(ExportConfig(onnx=tmp_path / "gn.onnx", output=tmp_path / "g.onnx", input_gradients="saliency",
                                 quiet=True))  # fmt: skip
    assert onnx.load(str(result.output)).opset_import[0].version <= 20  # opset 21 converted down for TensorRT
    frames = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    assert_saliency_matches_torch(net, result.output, frames, np.array([[1, 3], [2, 0]], np.int64))
