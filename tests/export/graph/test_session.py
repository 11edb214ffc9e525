"""The exporter's onnxruntime sessions: weights as arrays, the graph untouched."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from realtime.export.graph import session as graph_session


def _matmul_model(weight: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_large_weights_go_as_arrays_and_the_model_is_left_as_it_was() -> None:
    weight = np.random.default_rng(0).standard_normal((256, 128)).astype(np.float32)  # 128 KB: above the limit
    model = _matmul_model(weight)
    before = model.SerializeToString()
    stub, names, arrays = graph_session._without_large_weights(model)
    assert names == ["w"] and stub.ByteSize() < 1024  # the stub holds no weight bytes
    np.testing.assert_array_equal(arrays[0], weight)
    x = np.random.default_rng(1).standard_normal((3, 256)).astype(np.float32)
    plain = ort.InferenceSession(before, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = graph_session.cpu_session(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, plain)
    np.testing.assert_allclose(got, x @ weight, rtol=1e-5, atol=1e-5)
    assert model.SerializeToString() == before  # the caller's graph is not touched


def test_small_and_non_native_weights_stay_in_the_graph() -> None:
    small = _matmul_model(np.ones((4, 2), np.float32))
    assert graph_session._without_large_weights(small)[1] == []
    big = _matmul_model(np.ones((256, 128), np.float32))
    big.graph.initializer[0].data_type = TensorProto.BFLOAT16  # not a type numpy holds as onnxruntime does
    stub, names, _ = graph_session._without_large_weights(big)
    assert names == [] and stub.graph.initializer[0].raw_data == big.graph.initializer[0].raw_data


def test_an_unread_large_weight_stays_in_the_graph_and_the_session_opens() -> None:
    """onnxruntime drops an initializer no node reads before it takes the arrays: that one stays serialized."""
    model = _matmul_model(np.ones((256, 128), np.float32))
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((256, 128), np.float32), "unused"))
    assert graph_session._without_large_weights(model)[1] == ["w"]
    x = np.ones((1, 256), np.float32)
    np.testing.assert_array_equal(graph_session.cpu_session(model).run(None, {"x": x})[0], np.full((1, 128), 256.0))
