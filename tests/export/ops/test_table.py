"""The op table: one record per op type, and every rule recorded."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from realtime.export import ops
from realtime.export.ops import OPS, SUPPORTED_OPS, TENSORRT_OPS

onnx = pytest.importorskip("onnx")


EXPORT = Path(ops.__file__).resolve().parents[1]


RULE_ARGS = ["ctx", "node", "g", "carried"]


def unrecorded_rules(source: str) -> list[str]:
    """Functions of a family module shaped like a rule (ctx, node, g, carried) that no record names."""
    tree = ast.parse(source)
    rules = {f.name for f in tree.body if isinstance(f, ast.FunctionDef) and [a.arg for a in f.args.args] == RULE_ARGS}
    named: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "RECORDS" for t in node.targets):
            named |= {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
    return sorted(rules - named)


def test_every_rule_has_its_record() -> None:
    for family in ops.FAMILIES:
        assert unrecorded_rules(inspect.getsource(family)) == [], family.__name__


def test_a_rule_added_without_its_record_is_caught() -> None:
    """The check above, on a family module with a new rule that nobody put in RECORDS."""
    source = inspect.getsource(ops.elementwise) + (
        "\n\ndef _mish(ctx: Context, node: onnx.NodeProto, g: Grad, carried: tuple[int, ...]) -> Grads:\n"
        "    return first(node, g)\n"
    )
    assert unrecorded_rules(source) == ["_mish"]


def test_records_are_consistent() -> None:
    for op_type, record in OPS.items():
        assert record.op_type == op_type
        if record.rule is not None:
            assert record.differentiable, op_type
    assert set(SUPPORTED_OPS) == {op for op, r in OPS.items() if r.rule is not None}
    assert tuple(sorted(SUPPORTED_OPS)) == SUPPORTED_OPS
    assert len(TENSORRT_OPS) == 150  # onnx-tensorrt 10.0's operators.md, rows marked Y (with ReduceL1, ReduceL2)
    assert set(SUPPORTED_OPS) <= TENSORRT_OPS  # every backward op the head can hand on is one TensorRT takes


def test_tensorrt_86_is_85_and_three_ops() -> None:
    """onnx-tensorrt's docs/operators.md on its 8.6-GA branch marks Y every row 8.5-GA's does, and these three
    (tests/export/variants/test_trt8.py holds 8.5-GA's list; the --trt8 profile keeps to it, JetPack 5's)."""
    assert {op for op, r in OPS.items() if r.tensorrt == 8.6} == {"GroupNormalization", "IsInf", "LayerNormalization"}


def _forward_op_types(path: Path) -> set[str]:
    """Op types of a contract graph's own forward nodes (the exporter's are named gradcam/...)."""
    model = onnx.load(str(path), load_external_data=False)
    return {n.op_type for n in model.graph.node if not n.name.startswith("gradcam")}


def test_every_op_the_importers_hand_over_has_a_record(small_models) -> None:
    """The forward graphs of the bundled demo models (Keras through tf2onnx) and the suite's small Keras
    models: every op type in them has a record, so the head analysis never falls back to defaults."""
    from realtime.demo.models import demo_model_paths

    seen: set[str] = set()
    for path in (*demo_model_paths().values(), *small_models.values()):
        seen |= _forward_op_types(path)
    assert seen and seen <= set(OPS), sorted(seen - set(OPS))


def _op_type_tables(path: Path) -> list[str]:
    """Literal collections of two or more op type names: a second table deciding something about ops."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Set | ast.Tuple | ast.List):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in OPS]
            if len(names) >= 2:
                found.append(f"{path.relative_to(EXPORT)}:{node.lineno} {names}")
    return found


def test_no_second_table_of_op_types_outside_the_op_table() -> None:
    offenders = []
    for path in EXPORT.rglob("*.py"):
        if "ops" in path.relative_to(EXPORT).parts:
            continue
        offenders += _op_type_tables(path)
    assert not offenders, offenders
