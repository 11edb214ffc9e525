"""Token layers explained on their grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from realtime.export.checks.run import run_onnx
from realtime.export.pipeline import ExportConfig, ExportError, export
from realtime.export.targets.tokens import TokenGrid, TokenHint, infer_grid


@pytest.mark.parametrize(
    ("tokens", "image", "hint", "grid"),
    [
        (197, (224, 224), TokenHint(), TokenGrid(14, 14, 1)),  # ViT-B/16, DeiT: the class token
        (198, (224, 224), TokenHint(), TokenGrid(14, 14, 2)),  # distilled DeiT: class and distillation
        (196, (224, 224), TokenHint(), TokenGrid(14, 14, 0)),  # no prefix (global average pooling)
        (50, (224, 224), TokenHint(), TokenGrid(7, 7, 1)),  # ViT-B/32
        (141, (224, 160), TokenHint(), TokenGrid(14, 10, 1)),  # a landscape input: 14 x 10 patches
        (197, (224, 224), TokenHint(grid=(14, 14)), TokenGrid(14, 14, 1)),
        (197, (224, 224), TokenHint(grid=(14, 14), prefix=2), None),  # 14 x 14 + 2 is not 197
        (197, (224, 224), TokenHint(prefix=0), None),  # 197 is prime
        (7, (224, 224), TokenHint(), None),  # no grid of the image's aspect
        (201, (224, 224), TokenHint(), TokenGrid(14, 14, 5)),  # a class token and 4 registers, no flag
        (213, (224, 224), TokenHint(), None),  # 17 prefix tokens: more than a model has
        (17, (64, 64), TokenHint(), TokenGrid(4, 4, 1)),  # 4x4 and a class token, not 3x3 and eight
    ],
)
def test_the_grid_of_a_token_layer(
    tokens: int, image: tuple[int, int], hint: TokenHint, grid: TokenGrid | None
) -> None:
    assert infer_grid(tokens, image, hint) == grid


def _token_classifier(path: Path, prefix: int) -> tuple[Path, np.ndarray]:
    """x [N,3,8,8] -> 2x2 patches of 4x4 (Conv, stride 4) -> [N, 4, C] tokens, `prefix` constant tokens
    first -> LayerNorm (the layer) -> mean over every token -> Gemm. Returns the file and the Gemm weight."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    c, classes = 6, 3
    fc = rng.normal(0, 0.5, (c, classes)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["patches"], strides=[4, 4], kernel_shape=[4, 4]),
        helper.make_node("Reshape", ["patches", "flat"], ["channels_first"]),
        helper.make_node("Transpose", ["channels_first"], ["patch_tokens"], perm=[0, 2, 1]),
        helper.make_node("Shape", ["patch_tokens"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "prefix_rest"], ["prefix_shape"], axis=0),
        helper.make_node("Expand", ["prefix_token", "prefix_shape"], ["prefix"]),
        helper.make_node("Concat", ["prefix", "patch_tokens"], ["tokens"], axis=1),
        helper.make_node("LayerNormalization", ["tokens", "gamma", "beta"], ["normed"], axis=-1),
        helper.make_node("ReduceMean", ["normed"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("Gemm", ["pooled", "fc"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (c, 3, 4, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([0, c, 4], np.int64), "flat"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([prefix, c], np.int64), "prefix_rest"),
        numpy_helper.from_array(rng.normal(0, 1, (1, prefix, c)).astype(np.float32), "prefix_token"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.normal(0, 0.1, c).astype(np.float32), "beta"),
        numpy_helper.from_array(fc, "fc"),
    ]
    graph = helper.make_graph(
        nodes, "tokens", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", classes])], inits,
    )  # fmt: skip
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
                     .SerializeToString())  # fmt: skip
    return path, fc


def test_a_token_layer_is_explained_on_its_grid_without_the_prefix(tmp_path: Path) -> None:
    """logits = mean over the T tokens of LN(tokens) @ fc: d logit_k / d token = fc[:, k] / T for every
    token, so each patch's gradient is fc[:, k] / 5 and the channel weights are fc[:, k] / 5 (the
    class token's share is dropped with it, not spread over the patches), worked out by hand."""
    source, fc = _token_classifier(tmp_path / "tokens.onnx", prefix=1)
    result = export(ExportConfig(onnx=source, layer="normed", output=tmp_path / "g.onnx", preprocessing="raw",
                                 quiet=True))  # fmt: skip
    assert result.check is not None and result.check.ok()
    images = np.random.default_rng(4).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    got = run_onnx(result.output, images, np.array([[-1], [2]], np.int64))
    assert got["activations"].shape == (2, 2, 2, 6) and got["cam"].shape == (2, 1, 2, 2)
    for i in range(2):
        k = int(got["classes"][i, 0])
        np.testing.assert_allclose(got["weights"][i, 0], fc[:, k] / 5, rtol=1e-5, err_msg=f"image {i}")


def test_a_token_layer_off_any_grid_says_to_pass_the_grid(tmp_path: Path) -> None:
    source, _ = _token_classifier(tmp_path / "tokens.onnx", prefix=30)  # 30 + 2x2: no grid with 16 prefix or fewer
    with pytest.raises(ExportError, match="--grid HxW"):
        export(ExportConfig(onnx=source, layer="normed", output=tmp_path / "g.onnx", preprocessing="raw", quiet=True))
    result = export(ExportConfig(onnx=source, layer="normed", grid=(2, 2), output=tmp_path / "g.onnx",
                                 preprocessing="raw", quiet=True))  # fmt: skip
    assert result.check is not None and result.check.ok()
    assert not (tmp_path / "g.onnx.partial").exists()
