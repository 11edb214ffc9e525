"""The op table: one record per ONNX op type (ops/record.py), gathered from one module per op family.

To add an op: write its rule in the family's module (or a new one listed below), add its
OpRecord to that module's RECORDS, and give it a one-node case in tests/test_op_rules.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from realtime.export.ops import (
    body,
    dense,
    elementwise,
    indexing,
    layout,
    norms,
    plumbing,
    pools,
    reductions,
    resampling,
    softmax,
)
from realtime.export.ops.record import OpRecord

FAMILIES = (elementwise, dense, softmax, layout, indexing, pools, resampling, reductions, norms, body, plumbing)


def _table() -> dict[str, OpRecord]:
    table: dict[str, OpRecord] = {}
    for family in FAMILIES:
        for record in family.RECORDS:
            if record.op_type in table:
                raise ValueError(f"{record.op_type} has two records ({family.__name__} and another family)")
            table[record.op_type] = record
    return table


OPS: Mapping[str, OpRecord] = _table()
UNKNOWN = OpRecord("")  # what an op without a record is taken to be: no rule, nothing special, not TensorRT's

SUPPORTED_OPS = tuple(sorted(op for op, record in OPS.items() if record.rule is not None))
TENSORRT_OPS = frozenset(op for op, record in OPS.items() if record.tensorrt)  # TensorRT 10's parser
TENSORRT_MAX_OPSET = 20  # the newest opset TensorRT 10's parser reads: newer files are converted down at import
TENSORRT8_OPS = frozenset(op for op, record in OPS.items() if record.tensorrt == 8.5)  # JetPack 5's and 6's


def record(op_type: str) -> OpRecord:
    """The record of `op_type`, or UNKNOWN's defaults."""
    return OPS.get(op_type, UNKNOWN)
