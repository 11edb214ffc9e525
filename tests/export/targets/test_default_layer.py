"""The default layer is a picture: a strip of one row (MaxViT's last grid window read as 1x49) never is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from realtime.export import targets
from realtime.export.importers.onnx_file import load_onnx


def test_a_one_row_map_is_never_the_default_layer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "w2": rng.normal(0, 0.1, (8, 8, 32, 1)),
               "fc": rng.normal(0, 0.3, (8, 5))}  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["picture"]),
         helper.make_node("Conv", ["picture", "w2"], ["c2"]), helper.make_node("Relu", ["c2"], ["strip"]),  # 8x1x32
         helper.make_node("GlobalAveragePool", ["strip"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("MatMul", ["f", "fc"], ["logits"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )  # fmt: skip
    path = tmp_path / "strip.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())
    layers = targets.list_layers(load_onnx(path))
    assert [layer.name for layer in layers if layer.default] == ["picture"]
    assert "strip" in [layer.name for layer in layers]  # still there for --layer
