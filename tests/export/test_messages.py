"""Refusals quote what onnxruntime said went wrong, the shapes included, in one line."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from realtime.export.messages import first_line


def test_an_onnxruntime_shape_error_keeps_its_shapes_and_drops_its_cpp_source() -> None:
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "target"], ["y"], name="the_reshape")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 16, 197])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1, 2, 16, 197], np.int64), "target")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception) as caught:
        session.run(None, {"x": np.zeros((1, 2, 4, 16, 197), np.float32)})
    line = first_line(caught.value)
    assert "{1,2,4,16,197}" in line and "{1,2,16,197}" in line and "the_reshape" in line, line
    assert ".h:" not in line and "\n" not in line and len(line) <= 400
