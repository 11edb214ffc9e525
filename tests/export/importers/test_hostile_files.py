"""Files built to exhaust the importer: its memory is bounded by what the file holds, not by what its shapes
declare, and a structure no model has is refused before anything walks it. One line, exit code 2."""

from __future__ import annotations

import time
from pathlib import Path

from onnx import TensorProto, helper

from tests.helpers.commands import one_line_refusal, run_in_process
from tests.helpers.protobuf_bytes import field, if_node


def test_a_tiny_file_declaring_a_60000_pixel_input_is_refused_before_allocating_it(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["logits"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 60000, 60000])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
    )  # fmt: skip
    model = tmp_path / "huge_input.onnx"
    model.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    assert model.stat().st_size < 1000  # 43 GB of probe input declared in a few hundred bytes
    start = time.monotonic()
    line = one_line_refusal(run_in_process("realtime.export.cli", "--onnx", str(model), "--output",
                                           str(tmp_path / "out.onnx")))  # fmt: skip
    assert "8192 pixels a side" in line and time.monotonic() - start < 10


def test_a_file_of_subgraphs_nested_without_end_is_refused_before_it_is_walked(tmp_path: Path) -> None:
    data = helper.make_graph([], "leaf", [], []).SerializeToString()
    for _ in range(1000):  # If in If in If ...: protobuf's own parser gives up at 100 levels
        data = field(1, if_node(data))
    model = tmp_path / "nested.onnx"
    model.write_bytes(field(7, data))
    line = one_line_refusal(run_in_process("realtime.export.cli", "--onnx", str(model), "--output",
                                           str(tmp_path / "out.onnx")))  # fmt: skip
    assert "nest more than" in line
