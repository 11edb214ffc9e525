"""Einsum as the matrix product it is: the equations attention and MLP-mixers write give onnxruntime's own
Einsum values; the ones that are not one product are left alone; a model written with einsum goes through
both torch exporters and matches torch autograd down to the input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from realtime.export.graph.session import cpu_session
from realtime.export.importers.passes.einsum import as_product, einsums_as_products
from tests.helpers.optional import needs
from tests.helpers.torch_export import as_users_export, assert_saliency_matches_torch

PRODUCTS = {
    "B G H I D, B G H J D -> B G H I J": [(2, 3, 2, 5, 4), (2, 3, 2, 6, 4)],  # torchvision MaxViT: q k^T
    "BGHIJ,BGHJD->BGHID": [(2, 3, 2, 5, 6), (2, 3, 2, 6, 4)],  # its attention @ v
    "bnd,de->bne": [(2, 5, 4), (4, 3)],  # a token or channel MLP
    "bhid,bhjd->bhij": [(2, 3, 5, 4), (2, 3, 6, 4)],
    "nd,bdm->bmn": [(5, 4), (2, 4, 3)],  # the output in another order
    "bji,bjk->bik": [(2, 4, 5), (2, 4, 3)],  # the first operand transposed
}
NOT_ONE_PRODUCT = ["ii->i", "ij,jk,kl->il", "...ij,...jk->...ik", "bij,bjk->bi", "bijk,bjk->bi", "ij,ij->ij"]


def _einsum_model(equation: str, shapes: list[tuple[int, ...]]) -> onnx.ModelProto:
    h = onnx.helper
    inputs = [h.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(shape))
              for name, shape in zip("ab", shapes, strict=True)]  # fmt: skip
    graph = h.make_graph([h.make_node("Einsum", ["a", "b"], ["y"], name="einsum", equation=equation)], "g", inputs,
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])  # fmt: skip
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("equation", sorted(PRODUCTS))
def test_a_product_equation_becomes_a_matmul_with_einsums_values(equation: str) -> None:
    shapes = PRODUCTS[equation]
    model = _einsum_model(equation, shapes)
    rng = np.random.default_rng(0)
    feeds = {name: rng.normal(size=shape).astype(np.float32) for name, shape in zip("ab", shapes, strict=True)}
    (expected,) = cpu_session(model).run(None, feeds)
    assert einsums_as_products(model) == 1
    assert "Einsum" not in {n.op_type for n in model.graph.node} and "MatMul" in {n.op_type for n in model.graph.node}
    (got,) = cpu_session(model).run(None, feeds)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, np.einsum(equation.replace(" ", ""), *feeds.values()), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("equation", NOT_ONE_PRODUCT)
def test_an_equation_that_is_not_one_product_is_left_alone(equation: str) -> None:
    assert as_product(equation) is None


def _mixer() -> Any:
    torch = needs("torch")

    class TokenMixer(torch.nn.Module):
        """Patches, a token-mixing einsum and an einsum attention, then the mean token's logits."""

        def __init__(self) -> None:
            super().__init__()
            self.patches = torch.nn.Conv2d(3, 16, 8, stride=8)
            self.tokens = torch.nn.Parameter(torch.randn(16, 16) * 0.2)
            self.head = torch.nn.Linear(16, 5)

        def forward(self, x: Any) -> Any:
            t = self.patches(x).flatten(2).transpose(1, 2)
            t = t + torch.einsum("nm,bmc->bnc", self.tokens, t)
            scores = torch.softmax(torch.einsum("bic,bjc->bij", t, t) / 4.0, dim=-1)
            return self.head(torch.einsum("bij,bjc->bic", scores, t).mean(1))

    torch.manual_seed(0)
    return TokenMixer().eval()


@pytest.mark.parametrize("exporter", ["classic", "dynamo"])
def test_a_model_written_with_einsum_matches_torch_autograd(exporter: str, tmp_path: Path) -> None:
    needs("torch")
    needs("onnxscript")
    from realtime.export.pipeline import ExportConfig, export

    model = _mixer()
    path = as_users_export(model, exporter, tmp_path / "m.onnx")
    assert "Einsum" in {n.op_type for n in onnx.load(str(path)).graph.node}
    result = export(ExportConfig(onnx=path, output=tmp_path / "g.onnx", input_gradients="saliency", quiet=True))
    frames = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert_saliency_matches_torch(model, result.output, frames, np.array([[1, 3], [4, 0]], np.int64))
