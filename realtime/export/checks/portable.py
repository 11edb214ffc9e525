"""Checks a graph passes before it is written: valid, in the default domain, within TensorRT's parser.

Which ops TensorRT's parser takes is the op table's answer (ops/, `tensorrt`); the numeric
self-check of the backward lives in selfcheck.py.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper

from realtime import contract
from realtime.export.graph.builder import model_opset
from realtime.export.graph.shapes import element_types
from realtime.export.ops import TENSORRT8_OPS, TENSORRT_MAX_OPSET, TENSORRT_OPS, record

__all__ = ["TENSORRT_OPS", "GraphCheckError", "check_portable"]

TENSORRT8_MAX_OPSET = 17  # release/8.5-GA's operators.md: "supports operators up to Opset 17" (so does 8.6)
_T = onnx.TensorProto
TENSORRT8_EDGE_TYPES = frozenset({_T.FLOAT, _T.INT32})
TENSORRT8_TYPES = frozenset({_T.FLOAT, _T.FLOAT16, _T.INT32, _T.INT64, _T.INT8, _T.BOOL})  # int64: cast down
TENSORRT_TOPK_LIMIT = 3840


class GraphCheckError(RuntimeError):
    """A built graph is invalid, not portable, or disagrees with finite differences; nothing was written."""


def check_portable(
    path: Path, precision: str = "fp32", model: onnx.ModelProto | None = None, profile: str = contract.PROFILE_DEFAULT
) -> None:
    """onnx.checker (full) of the file, the default domain only, and only what TensorRT's parser takes:
    TensorRT 10's operators, or with the trt8 profile 8.5-GA's, opset 17 and its types. int8 graphs are
    checked by onnx.checker alone (they are for CPUs).

    `model` is the same graph in memory, when the caller has it: then the file is not read twice.
    """
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise GraphCheckError(f"the built graph fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    model = model if model is not None else onnx.load(str(path), load_external_data=False)
    if precision.startswith("int8"):
        return
    foreign = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise GraphCheckError(f"the {precision} graph uses ops outside the default ONNX domain: {', '.join(foreign)}")
    trt8 = profile == contract.PROFILE_TRT8
    parser, allowed, max_opset = (
        ("TensorRT 8's", TENSORRT8_OPS, TENSORRT8_MAX_OPSET)
        if trt8
        else ("TensorRT's", TENSORRT_OPS, TENSORRT_MAX_OPSET)
    )
    unsupported = sorted({n.op_type for n in model.graph.node} - allowed)
    if unsupported:
        raise GraphCheckError(f"ops {parser} ONNX parser does not support: {', '.join(unsupported)}")
    opset = model_opset(model)
    if opset > max_opset:
        raise GraphCheckError(f"opset {opset}: {parser} parser reads opsets up to {max_opset}")
    _constant_inputs(model)
    if trt8:
        _trt8_types(model)


def _constant_inputs(model: onnx.ModelProto) -> None:
    """The inputs the parser needs as initializers (the op table's tensorrt_constants), and TopK's limit."""
    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        for position in record(node.op_type).tensorrt_constants:
            if position < len(node.input) and node.input[position] and node.input[position] not in constants:
                raise GraphCheckError(f"{node.op_type} {node.name!r}: TensorRT needs input {position} as a constant")
        if node.op_type == "TopK" and int(numpy_helper.to_array(constants[node.input[1]]).max()) >= TENSORRT_TOPK_LIMIT:
            raise GraphCheckError(f"TopK {node.name!r}: TensorRT needs a constant K below {TENSORRT_TOPK_LIMIT}")


def _trt8_types(model: onnx.ModelProto) -> None:
    """float32 or int32 at the graph's edges, and inside only the types TensorRT 8 has (int64 it casts down)."""
    for value in (*model.graph.input, *model.graph.output):
        elem = value.type.tensor_type.elem_type
        if elem not in TENSORRT8_EDGE_TYPES:
            raise GraphCheckError(f"{value.name} is {_type_name(elem)}: TensorRT 8 takes float32 and int32 inputs")
    inside = {**element_types(model), **{init.name: init.data_type for init in model.graph.initializer}}
    for name, elem in inside.items():
        if elem not in TENSORRT8_TYPES:
            raise GraphCheckError(f"tensor {name!r} is {_type_name(elem)}, which TensorRT 8 does not have")
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        if to is not None and to not in TENSORRT8_TYPES:
            raise GraphCheckError(f"Cast {node.name!r} to {_type_name(to)}, which TensorRT 8 does not have")


def _type_name(elem: int) -> str:
    return onnx.TensorProto.DataType.Name(elem).lower()
