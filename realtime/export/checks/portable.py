"""Checks a graph passes before it is written: valid, in the default domain, within TensorRT's parser.

Which ops TensorRT's parser takes is the op table's answer (ops/, `tensorrt`); the numeric
self-check of the backward lives in selfcheck.py.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper

from realtime.export.graph.builder import model_opset
from realtime.export.ops import TENSORRT_OPS

__all__ = ["TENSORRT_OPS", "GraphCheckError", "check_portable"]

TENSORRT_MAX_OPSET = 20
TENSORRT_TOPK_LIMIT = 3840


class GraphCheckError(RuntimeError):
    """A built graph is invalid, not portable, or disagrees with finite differences; nothing was written."""


def check_portable(path: Path, precision: str = "fp32", model: onnx.ModelProto | None = None) -> None:
    """onnx.checker (full) of the file, the default domain only (fp32), and only ops TensorRT's parser supports.

    `model` is the same graph in memory, when the caller has it: then the file is not read twice.
    """
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise GraphCheckError(f"the built graph fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    model = model if model is not None else onnx.load(str(path), load_external_data=False)
    if precision != "fp32":
        return
    foreign = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise GraphCheckError(f"the fp32 graph uses ops outside the default ONNX domain: {', '.join(foreign)}")
    unsupported = sorted({n.op_type for n in model.graph.node} - TENSORRT_OPS)
    if unsupported:
        raise GraphCheckError(f"ops TensorRT's ONNX parser does not support: {', '.join(unsupported)}")
    opset = model_opset(model)
    if opset > TENSORRT_MAX_OPSET:
        raise GraphCheckError(f"opset {opset}: TensorRT's parser reads opsets up to {TENSORRT_MAX_OPSET}")
    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        k = constants.get(node.input[1]) if node.op_type == "TopK" and len(node.input) > 1 else None
        if node.op_type == "TopK" and (k is None or int(numpy_helper.to_array(k).max()) >= TENSORRT_TOPK_LIMIT):
            raise GraphCheckError(f"TopK {node.name!r}: TensorRT needs a constant K below {TENSORRT_TOPK_LIMIT}")
