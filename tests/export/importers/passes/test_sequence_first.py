"""nn.MultiheadAttention rebuilt batch-first."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.helpers.optional import needs
from tests.helpers.torch_export import as_users_export

needs("onnxscript")
from realtime import contract  # noqa: E402
from realtime.export.checks.run import run_onnx  # noqa: E402
from realtime.export.importers.passes import sequence_first  # noqa: E402
from realtime.export.pipeline import ExportConfig, ExportError, export  # noqa: E402
from realtime.export.preprocessing import PRESETS, preprocess_numpy  # noqa: E402

torch = needs("torch")


class TinyViT(torch.nn.Module):
    """Patches, a class token, position embeddings and one pre-norm block on nn.MultiheadAttention (batch_first, as
    torchvision's EncoderBlock), then the class token's logits."""

    def __init__(self, mask: str = "") -> None:
        super().__init__()
        self.patches = torch.nn.Conv2d(3, 32, 8, stride=8)
        self.token = torch.nn.Parameter(torch.randn(1, 1, 32))
        self.position = torch.nn.Parameter(torch.randn(1, 17, 32) * 0.1)
        self.norm = torch.nn.LayerNorm(32)
        self.attention = torch.nn.MultiheadAttention(32, 4, batch_first=True)
        self.head = torch.nn.Linear(32, 5)
        self.mask = torch.tril(torch.ones(17, 17, dtype=torch.bool), -1) if mask == "constant" else None  # row 0
        self.padding = mask == "padding"  # sees every token; "padding": a key_padding_mask computed per image

    def forward(self, x: Any) -> Any:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.token.expand(x.shape[0], -1, -1), tokens], dim=1) + self.position
        normed = self.norm(tokens)
        padding = normed.mean(-1) > 0.5 if self.padding else None
        mixed, _ = self.attention(normed, normed, normed, need_weights=False, attn_mask=self.mask,
                                  key_padding_mask=padding)  # fmt: skip
        return self.head((tokens + mixed)[:, 0])


def _model(mask: str = "") -> Any:
    torch.manual_seed(0)
    return TinyViT(mask).eval()


@pytest.mark.parametrize("mask", ["", "constant"])
@pytest.mark.parametrize("exporter", ["classic", "dynamo"])
def test_a_multihead_attention_block_goes_in_and_matches_torch_autograd(exporter: str, mask: str,
                                                                        tmp_path: Path) -> None:  # fmt: skip
    """Grad-CAM at the norm before the attention (the tokens on a 4x4 grid, the class token dropped), with and
    without a constant attention mask."""
    model = _model(mask)
    source = as_users_export(model, exporter, tmp_path / "m.onnx")
    result = export(ExportConfig(onnx=source, output=tmp_path / "g.onnx",
                                 quiet=True))  # fmt: skip
    frames = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    got = run_onnx(result.output, frames[:1], np.array([[-1, 3]], np.int64))
    x = torch.from_numpy(preprocess_numpy(frames[:1], PRESETS["torch"], "NCHW"))
    seen: dict[str, Any] = {}
    hook = model.norm.register_forward_hook(lambda _m, _i, o: seen.setdefault("a", o))
    logits = model(x)
    hook.remove()
    assert np.abs(got["logits"] - logits.detach().numpy()).max() <= 1e-4 * logits.abs().max().item()
    acts = seen["a"][0, 1:].reshape(4, 4, 32).detach().numpy()
    for k, target in enumerate(got["classes"][0]):
        (grad,) = torch.autograd.grad(logits[0, int(target)], seen["a"], retain_graph=True)
        weights = grad[0, 1:].reshape(4, 4, 32).numpy().mean(axis=(0, 1))
        cam = np.maximum(np.einsum("hwc,c->hw", acts, weights), 0)
        cam = cam / (cam.max() if cam.max() > 0 else 1)
        assert np.abs(got[contract.layer_output("weights", 0)][0, k] - weights).max() <= 1e-4 * np.abs(weights).max()
        assert np.abs(got["cam"][0, k] - cam).max() <= 1e-3


def test_a_wrong_rebuild_is_caught_by_its_value_check_and_the_block_kept(tmp_path: Path, monkeypatch) -> None:
    """The rebuilt block must give the original's values: with its scale doubled it does not, and the
    file keeps its own block (then refused by the backward, which names the Transpose)."""
    source = as_users_export(_model(), "classic", tmp_path / "m.onnx")
    model = onnx.load(str(source))
    assert len(sequence_first.find_blocks(model)) == 1
    original = sequence_first._rebuild

    def doubled(model: onnx.ModelProto, block: Any, values: dict) -> Any:
        scaled = dataclasses.replace(block, multipliers=(*block.multipliers, ("two", False)))
        return original(model, scaled, {**values, "two": np.array(2.0, np.float32)})

    monkeypatch.setattr(sequence_first, "_rebuild", doubled)
    nodes = len(model.graph.node)
    assert sequence_first.batch_first_attention(model, "input", [3, 32, 32]) == 0
    assert len(model.graph.node) == nodes and [o.name for o in model.graph.output] == ["logits"]
    with pytest.raises(ExportError, match="moves the batch axis"):
        export(ExportConfig(onnx=source, output=tmp_path / "g.onnx", quiet=True))
    assert not (tmp_path / "g.onnx").exists()


def test_a_padding_mask_computed_per_image_is_left_alone_and_refused_in_one_line(tmp_path: Path) -> None:
    """A key padding mask computed from each image is arithmetic the rebuild does not make: the block is not
    matched at all."""
    source = as_users_export(_model("padding"), "classic", tmp_path / "m.onnx")
    assert sequence_first.find_blocks(onnx.load(str(source))) == []
    with pytest.raises(ExportError, match="moves the batch axis") as caught:
        export(ExportConfig(onnx=source, output=tmp_path / "g.onnx", quiet=True))
    assert "\n" not in str(caught.value)
