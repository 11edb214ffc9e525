"""Model files read only what sits in their folder (realtime.model_files), checked before onnx or onnxruntime
opens them, whatever their versions: external data that is absolute, climbs out with `..`, is a symlink
leading out, or onnxruntime's `_ORT_MEM_ADDR_`; sparse initializers; subgraphs nested without end. Each is
refused in one line by gradcam-export --onnx, gradcam-live --model and GradCam(path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from realtime.model_files import ModelFileError, check_model_file
from tests.helpers.commands import one_line_refusal, run_in_process
from tests.helpers.protobuf_bytes import field as _field
from tests.helpers.protobuf_bytes import if_node as _if_node_bytes


def _model_with_weight_at(folder: Path, location: str) -> Path:
    """A Gemm classifier whose weight tensor says its bytes are at `location`."""
    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "24")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["logits"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 1, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])], [weight],
    )  # fmt: skip
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    (tmp_path / "models").mkdir()
    return secret


@pytest.mark.parametrize("kind", ["absolute", "dot-dot", "symlink", "ort-memory"])
def test_external_data_outside_the_folder_is_refused_everywhere(tmp_path: Path, outside: Path, kind: str) -> None:
    folder = tmp_path / "models"
    if kind == "symlink":
        (folder / "weights.bin").symlink_to(outside)  # shipped beside the model, pointing elsewhere
    location = {"absolute": str(outside), "dot-dot": "../secret.bin", "symlink": "weights.bin",
                "ort-memory": "_ORT_MEM_ADDR_"}[kind]  # fmt: skip
    model = _model_with_weight_at(folder, location)
    with pytest.raises(ModelFileError):
        check_model_file(model)
    line = one_line_refusal(run_in_process("realtime.export.cli", "--onnx", str(model), "--output",
                                           str(tmp_path / "out.onnx")))  # fmt: skip
    assert "folder" in line or "not a file name" in line, line
    line = one_line_refusal(run_in_process("realtime.live.cli", "--model", str(model), "--no-window"))
    assert "folder" in line or "not a file name" in line, line
    from realtime import GradCam

    with pytest.raises(ModelFileError):
        GradCam(model)


def test_external_data_beside_the_model_is_fine(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(np.ones(6, np.float32).tobytes())
    check_model_file(_model_with_weight_at(tmp_path, "weights.bin"))  # no error


def test_sparse_initializers_are_refused(tmp_path: Path) -> None:
    values = numpy_helper.from_array(np.ones(2, np.float32), "w")
    indices = numpy_helper.from_array(np.array([0, 5], np.int64), "w_indices")
    sparse = helper.make_sparse_tensor(values, indices, [3, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])  # fmt: skip
    graph.sparse_initializer.append(sparse)
    path = tmp_path / "sparse.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(ModelFileError, match="sparse"):
        check_model_file(path)


def test_subgraphs_nested_without_end_are_refused_before_they_are_walked(tmp_path: Path) -> None:
    """A million nested If nodes would take protobuf, onnx's checker and any recursive walk down with it; the
    file is refused from its structure, at a depth no model has."""
    inner = helper.make_graph([helper.make_node("Identity", ["c"], ["y"])], "leaf", [],
                              [helper.make_tensor_value_info("y", TensorProto.BOOL, [])])  # fmt: skip
    data = inner.SerializeToString()
    for _ in range(200):  # serialized by hand from the inside out (onnx's helpers recurse): If in If in If ...
        data = _field(1, _if_node_bytes(data))  # GraphProto.node = 1: a graph whose one node is an If
    model = _field(7, data) + _field(8, onnx.OperatorSetIdProto(domain="", version=17).SerializeToString())
    path = tmp_path / "nested.onnx"
    path.write_bytes(model)
    with pytest.raises(ModelFileError, match="nest more than"):
        check_model_file(path)
