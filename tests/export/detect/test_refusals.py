"""gradcam-export --onnx on files that are not the detectors it knows: one line that says what it expected,
exit code 2, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.helpers.commands import one_line_refusal, run_in_process


def _save(path: Path, nodes: list, outputs: list, weights: dict[str, np.ndarray]) -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])], outputs,
        [numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k) for k, v in weights.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _conv(
    name: str, x: str, out: str, channels: int, weights: dict[str, np.ndarray], stride: int = 1
) -> onnx.NodeProto:
    rng = np.random.default_rng(len(weights))
    weights[f"{name}.w"] = rng.normal(0, 0.3, (channels, 3 if x == "images" else 8, 3, 3))
    return helper.make_node("Conv", [x, f"{name}.w"], [out], pads=[1, 1, 1, 1], strides=[stride, stride], name=name)


def _export(tmp_path: Path, model: Path) -> str:
    output = tmp_path / "out.onnx"
    line = one_line_refusal(run_in_process("realtime.export.cli", "--onnx", str(model), "--output", str(output)))
    assert not output.exists() and [p.name for p in tmp_path.iterdir()] == [model.name]
    return line


def test_a_multi_output_file_that_is_not_a_detector_is_refused_in_one_line(tmp_path: Path) -> None:
    """Boxes and scores as two outputs (as SSD-style exports write them): no [N, classes] logits to explain
    and not the one-output layout of a YOLO head."""
    weights: dict[str, np.ndarray] = {}
    nodes = [
        _conv("stem", "images", "f", 8, weights, stride=4),  # [1,8,8,8]
        _conv("box", "f", "box_map", 4, weights),
        _conv("cls", "f", "cls_map", 2, weights),
        helper.make_node("Reshape", ["box_map", "to_anchors4"], ["boxes_t"]),
        helper.make_node("Transpose", ["boxes_t"], ["boxes"], perm=[0, 2, 1]),  # [1,64,4]
        helper.make_node("Reshape", ["cls_map", "to_anchors2"], ["logits_t"]),
        helper.make_node("Transpose", ["logits_t"], ["logits"], perm=[0, 2, 1]),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),  # [1,64,2]
    ]
    weights.update(to_anchors4=np.array([1, 4, 64]), to_anchors2=np.array([1, 2, 64]))
    outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 64, 4]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 64, 2])]  # fmt: skip
    line = _export(tmp_path, _save(tmp_path / "two_outputs.onnx", nodes, outputs, weights))
    assert "detector" in line and "classifier" in line, line  # what it can read, both kinds


def test_a_detector_whose_head_the_importer_does_not_know_is_refused_with_what_it_expected(tmp_path: Path) -> None:
    weights: dict[str, np.ndarray] = {}
    nodes = [
        _conv("stem", "images", "f", 8, weights, stride=4),  # [1,8,8,8]
        _conv("box", "f", "box_map", 4, weights),
        _conv("cls", "f", "cls_map", 2, weights),
        helper.make_node("Reshape", ["box_map", "to_anchors4"], ["boxes"]),  # [1,4,64]
        helper.make_node("Reshape", ["cls_map", "to_anchors2"], ["logits"]),  # [1,2,64]
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),  # not the Sigmoid a YOLO head ends with
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),  # [1,6,64]
    ]
    weights.update(to_anchors4=np.array([1, 4, 64]), to_anchors2=np.array([1, 2, 64]))
    model = _save(tmp_path / "odd_head.onnx", nodes,
                  [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 64])], weights)  # fmt: skip
    line = _export(tmp_path, model)
    assert "expected the YOLOv8 / YOLO11 / YOLO26 Detect head" in line, line
