"""The batch folded into another axis (LeViT's BatchNorm1d over tokens, MobileViT's unfold, Swin's shifted
windows with their mask) carried batch-first: each through both torch exporters, every image of a batch of two
against torch autograd (the input gradient and the default layer's weights); a fold the pass cannot follow
leaves the graph exactly as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.helpers.optional import needs
from tests.helpers.torch_export import as_users_export, assert_saliency_matches_torch

torch = needs("torch")
needs("onnxscript")
from realtime import contract  # noqa: E402
from realtime.export.graph.session import cpu_session  # noqa: E402
from realtime.export.importers.passes.folded_batch import unfold_batch_folds  # noqa: E402
from realtime.export.pipeline import ExportConfig, ExportError, export  # noqa: E402

nn = torch.nn


class TokensBatchNorm(nn.Module):
    """LeViT: BatchNorm1d over [N*tokens, C] (the gradient there is {N, K, 16, 48} folded to {N*16, 48})."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 48, 8, stride=8)
        self.linear = nn.Linear(48, 48)
        self.norm = nn.BatchNorm1d(48)
        self.head = nn.Linear(48, 5)

    def forward(self, x: Any) -> Any:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        n, t, c = tokens.shape
        mixed = self.norm(self.linear(tokens).flatten(0, 1)).reshape(n, t, c)
        return self.head(nn.functional.hardswish(tokens + mixed).mean(1))


class Unfolded(nn.Module):
    """MobileViT: 2x2 patches unfolded into the batch ([N*4, patches, C]), attention over patches, folded back."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.norm = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.project = nn.Conv2d(16, 16, 1)
        self.head = nn.Linear(16, 5)

    def forward(self, x: Any) -> Any:
        features = self.stem(x)
        n, c, h, w = features.shape
        patches = features.reshape(n * c * h // 2, 2, w // 2, 2).transpose(1, 2)
        patches = patches.reshape(n, c, h * w // 4, 4).transpose(1, 3).reshape(n * 4, h * w // 4, c)
        q, k, v = self.qkv(self.norm(patches)).chunk(3, dim=-1)
        attended = torch.softmax(q @ k.transpose(1, 2) / 4.0, dim=-1) @ v + patches
        back = attended.reshape(n, 4, h * w // 4, c).transpose(1, 3).reshape(n * c * h // 2, w // 2, 2, 2)
        back = back.transpose(1, 2).reshape(n, c, h, w)
        return self.head(nn.functional.gelu(self.project(back)).mean((2, 3)))


class ShiftedWindows(nn.Module):
    """Swin: shifted 4x4 windows folded into the batch ([N*4, 16, C]), attention with the shift's mask."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.qkv = nn.Linear(16, 48)
        self.head = nn.Linear(16, 5)
        regions = torch.zeros(8, 8)
        regions[4:6], regions[6:] = 1, 2
        regions[:, 4:6] += 3
        regions[:, 6:] += 6
        windows = regions.reshape(2, 4, 2, 4).transpose(1, 2).reshape(4, 16)
        self.register_buffer("mask", (windows[:, None] != windows[:, :, None]).float() * -100.0)

    def forward(self, x: Any) -> Any:
        features = torch.roll(self.stem(x).permute(0, 2, 3, 1), shifts=(-2, -2), dims=(1, 2))
        n, h, w, c = features.shape
        windows = features.reshape(n, 2, 4, 2, 4, c).permute(0, 1, 3, 2, 4, 5).reshape(n * 4, 16, c)
        q, k, v = self.qkv(windows).chunk(3, dim=-1)
        scores = (q @ k.transpose(1, 2) / 4.0).reshape(n, 4, 16, 16) + self.mask
        attended = torch.softmax(scores.reshape(n * 4, 16, 16), dim=-1) @ v
        back = attended.reshape(n, 2, 2, 4, 4, c).permute(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)
        return self.head(torch.roll(back, shifts=(2, 2), dims=(1, 2)).mean((1, 2)))


class ChannelsAsImages(nn.Module):
    """Each channel convolved as an image of its own ([N*C, 1, H, W]): a fold a Conv cannot follow."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 4, stride=4)
        self.shared = nn.Conv2d(1, 1, 3, padding=1)
        self.head = nn.Linear(4, 5)

    def forward(self, x: Any) -> Any:
        features = self.stem(x)
        n, c, h, w = features.shape
        mixed = self.shared(features.reshape(n * c, 1, h, w)).reshape(n, c, h, w)
        return self.head(torch.tanh(mixed).mean((2, 3)))


MODELS = {"tokens_batchnorm": TokensBatchNorm, "unfolded": Unfolded, "shifted_windows": ShiftedWindows}


def _model(name: str) -> Any:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("exporter", ["classic", "dynamo"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_folded_batch_goes_in_and_matches_torch_autograd(name: str, exporter: str, tmp_path: Path) -> None:
    model = _model(name)
    source = as_users_export(model, exporter, tmp_path / "m.onnx")
    result = export(ExportConfig(onnx=source, output=tmp_path / "g.onnx", input_gradients="saliency", quiet=True))
    frames = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    targets = np.array([[1, 3], [4, 0]], np.int64)
    got = assert_saliency_matches_torch(model, result.output, frames, targets)  # both images in one batch
    assert np.isfinite(got[contract.layer_output("weights", 0)]).all()


@pytest.mark.parametrize("exporter", ["classic", "dynamo"])
def test_a_head_through_a_fold_it_cannot_follow_is_refused_in_one_line(exporter: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = as_users_export(ChannelsAsImages().eval(), exporter, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match=r"folded into another axis .* cannot work on") as caught:
        export(ExportConfig(onnx=source, output=tmp_path / "g.onnx", input_gradients="saliency", quiet=True))
    assert "\n" not in str(caught.value) and "pick a layer after it" in str(caught.value)
    assert not (tmp_path / "g.onnx").exists()


def _fold_then(op: str) -> onnx.ModelProto:
    """[1, 4, 8, 8] -> [4, 1, 8, 8] (channels folded into the batch) -> a Conv, or a Concat with a constant:
    folds no op can follow on [N, 4, 1, 8, 8]."""
    h = onnx.helper
    middle = (h.make_node("Conv", ["folded", "w"], ["convolved"], pads=[1, 1, 1, 1]) if op == "Conv" else
              h.make_node("Concat", ["folded", "zeros"], ["convolved"], axis=1))  # fmt: skip
    nodes = [h.make_node("Reshape", ["x", "fold"], ["folded"]), middle,
             h.make_node("Reshape", ["convolved", "back"], ["y"])]  # fmt: skip
    inits = [
        onnx.numpy_helper.from_array(np.array([4, 1, 8, 8], np.int64), "fold"),
        onnx.numpy_helper.from_array(np.array([1, 4 * (1 + (op == "Concat")), 8, 8], np.int64), "back"),
        onnx.numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w"),
        onnx.numpy_helper.from_array(np.zeros((4, 1, 8, 8), np.float32), "zeros"),
    ]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 8, 8])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", None, 8, 8])], inits)  # fmt: skip
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def _fold_then_norm() -> onnx.ModelProto:
    """[1, 6, 4] -> [6, 4] -> BatchNormalization -> [1, 6, 2, 2]: followed, and the same values."""
    h = onnx.helper
    rng = np.random.default_rng(0)
    nodes = [
        h.make_node("Reshape", ["x", "fold"], ["folded"]),
        h.make_node("BatchNormalization", ["folded", "gamma", "beta", "mean", "var"], ["normed"], epsilon=1e-3),
        h.make_node("Reshape", ["normed", "back"], ["y"]),
    ]
    inits = [onnx.numpy_helper.from_array(np.array([6, 4], np.int64), "fold"),
             onnx.numpy_helper.from_array(np.array([1, 6, 2, 2], np.int64), "back"),
             *(onnx.numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), name)
               for name in ("gamma", "beta", "mean", "var"))]  # fmt: skip
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 6, 4])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 6, 2, 2])], inits)  # fmt: skip
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def test_a_fold_it_can_follow_gives_the_same_values_at_any_batch() -> None:
    model = _fold_then_norm()
    x = np.random.default_rng(1).normal(size=(1, 6, 4)).astype(np.float32)
    (before,) = cpu_session(model).run(None, {"x": x})
    assert unfold_batch_folds(model).changed > 0
    onnx.checker.check_model(model, full_check=True)
    (after,) = cpu_session(model).run(None, {"x": x})
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    (three,) = cpu_session(model).run(None, {"x": np.concatenate([x, 2 * x, -x])})
    (alone,) = cpu_session(model).run(None, {"x": -x})
    np.testing.assert_allclose(three[2:], alone, rtol=1e-6)


@pytest.mark.parametrize("op", ["Conv", "Concat"])
def test_a_fold_it_cannot_follow_leaves_the_graph_as_it_was(op: str) -> None:
    model = _fold_then(op)
    before = model.SerializeToString()
    unfolded = unfold_batch_folds(model)
    assert (unfolded.changed, unfolded.folded) == (0, {"folded", "convolved"})  # the fold, and past the op
    assert f"({op}) cannot work" in unfolded.refused
    assert model.SerializeToString() == before
