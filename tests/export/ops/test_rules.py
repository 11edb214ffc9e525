"""Every op rule, on one node, against float64 central differences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from realtime.export.autodiff.backward import build_backward
from realtime.export.autodiff.head import Head
from realtime.export.graph import passes
from realtime.export.graph.builder import GraphBuilder
from realtime.export.graph.shapes import static_shapes
from realtime.export.ops import OPS, SUPPORTED_OPS

N, K = 2, 3


@dataclass(frozen=True)
class Case:
    """Nodes reading "x" (and constants), the last one's output flattened into the logits."""

    name: str
    shape: tuple[int, ...]  # x without the batch axis
    nodes: Sequence[tuple[str, Sequence[str], dict[str, Any]]]  # (op type, inputs, attributes)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    kinks: tuple[float, ...] = ()  # values x keeps away from
    distinct: bool = False  # every x different (max-pool ties)
    positive: bool = False  # x in [0.5, 2.5] (Sqrt, a divisor)
    opset: int = 17
    step: float = 1e-6  # onnx's reference Erf rounds to float32: its differences need a larger step
    tolerance: float = 1e-4


def c(*values: float) -> np.ndarray:
    return np.asarray(values, np.float32)


def r(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.5, shape).astype(np.float32)


CHW = (3, 4, 4)


TC = (4, 6)  # tokens, channels


CASES = [
    Case("relu", CHW, [("Relu", ["x"], {})], kinks=(0.0,)),
    Case("leaky_relu", CHW, [("LeakyRelu", ["x"], {"alpha": 0.1})], kinks=(0.0,)),
    Case("sigmoid", CHW, [("Sigmoid", ["x"], {})]),
    Case("tanh", CHW, [("Tanh", ["x"], {})]),
    Case("hard_sigmoid", CHW, [("HardSigmoid", ["x"], {"alpha": 0.3, "beta": 0.4})], kinks=(-4 / 3, 2.0)),
    Case("hard_swish", CHW, [("HardSwish", ["x"], {})], kinks=(-3.0, 3.0)),
    Case("clip", CHW, [("Clip", ["x", "lo", "hi"], {})], {"lo": c(-0.3), "hi": c(0.4)}, kinks=(-0.3, 0.4)),
    Case("identity_dropout", CHW, [("Identity", ["x"], {}), ("Dropout", ["x1"], {})]),
    Case("add_broadcast", CHW, [("Add", ["x", "b"], {})], {"b": r(1, 3, 1, 1)}),
    Case("add_itself", CHW, [("Add", ["x", "x"], {})]),
    Case("sub_second", CHW, [("Sub", ["b", "x"], {})], {"b": r(2, 4)}),
    Case("sum_three", CHW, [("Sum", ["x", "b", "x"], {})], {"b": r(3, 4, 4)}),
    Case("mul_scalar", CHW, [("Mul", ["x", "s"], {})], {"s": c(1.7)}),
    Case("mul_broadcast", CHW, [("Mul", ["b", "x"], {})], {"b": r(4, 3, 1, 4)}),
    Case("mul_itself", CHW, [("Mul", ["x", "x"], {})]),
    Case("silu", CHW, [("Sigmoid", ["x"], {}), ("Mul", ["x", "x1"], {})]),
    Case("div_scalar", CHW, [("Div", ["x", "s"], {})], {"s": c(2.5)}),
    Case("div_broadcast", CHW, [("Div", ["x", "b"], {})], {"b": np.abs(r(5, 3, 1, 1)) + 0.5}),
    Case("gemm", (6,), [("Gemm", ["x", "w", "bias"], {})], {"w": r(6, 6, 5), "bias": r(7, 5)}),
    Case("gemm_trans_alpha", (6,), [("Gemm", ["x", "w"], {"transB": 1, "alpha": 0.5})], {"w": r(8, 5, 6)}),
    Case("matmul", (6,), [("MatMul", ["x", "w"], {})], {"w": r(9, 6, 4)}),
    Case("flatten", CHW, [("Flatten", ["x"], {"axis": 1})]),
    Case("reshape", CHW, [("Reshape", ["x", "shape"], {})], {"shape": np.asarray([0, 12, 4], np.int64)}),
    Case("unsqueeze_squeeze", CHW, [("Unsqueeze", ["x", "ax"], {}), ("Squeeze", ["x1", "ax"], {})],
         {"ax": np.asarray([2], np.int64)}),
    Case("transpose", CHW, [("Transpose", ["x"], {"perm": [0, 2, 3, 1]})]),
    Case("maxpool_2x2", CHW, [("MaxPool", ["x"], {"kernel_shape": [2, 2], "strides": [2, 2]})], distinct=True),
    Case("maxpool_floor", (2, 5, 5), [("MaxPool", ["x"], {"kernel_shape": [2, 2], "strides": [2, 2]})],
         distinct=True),
    Case("maxpool_3x3_s2_pad", (2, 6, 6),
         [("MaxPool", ["x"], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})], distinct=True),
    Case("maxpool_same_upper", (2, 5, 5),
         [("MaxPool", ["x"], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"})],
         distinct=True),
    Case("relu_then_maxpool", CHW, [("Relu", ["x"], {}), ("MaxPool", ["x1"], {"kernel_shape": [2, 2],
                                                                             "strides": [2, 2]})],
         kinks=(0.0,), distinct=True),
    Case("avgpool", CHW, [("AveragePool", ["x"], {"kernel_shape": [2, 2], "strides": [2, 2]})]),
    Case("avgpool_overlapping_padded", CHW, [("AveragePool", ["x"], {"kernel_shape": [3, 3], "strides": [1, 1],
                                                                     "pads": [1, 1, 1, 1]})]),
    Case("avgpool_padded_counting_pads", CHW, [("AveragePool", ["x"], {"kernel_shape": [3, 3], "strides": [2, 2],
                                                                       "pads": [1, 1, 1, 1],
                                                                       "count_include_pad": 1})]),
    Case("avgpool_ceil", (2, 5, 5), [("AveragePool", ["x"], {"kernel_shape": [2, 2], "strides": [2, 2],
                                                             "ceil_mode": 1})]),
    Case("resize_nearest_2x", CHW, [("Resize", ["x", "", "scales"], {"mode": "nearest"})],
         {"scales": c(1, 1, 2, 2)}),
    Case("resize_linear_half_pixel", CHW, [("Resize", ["x", "", "scales"],
                                            {"mode": "linear", "coordinate_transformation_mode": "half_pixel"})],
         {"scales": c(1, 1, 2, 2)}),
    Case("resize_linear_align_corners_to_a_size", CHW, [("Resize", ["x", "", "", "sizes"],
                                                          {"mode": "linear", "axes": [2, 3],
                                                           "coordinate_transformation_mode": "align_corners"})],
         {"sizes": np.array([7, 5], np.int64)}, opset=18),
    Case("global_avgpool", CHW, [("GlobalAveragePool", ["x"], {})]),
    Case("global_maxpool", CHW, [("GlobalMaxPool", ["x"], {})], distinct=True),
    Case("reduce_mean_spatial", CHW, [("ReduceMean", ["x"], {"axes": [2, 3], "keepdims": 1})]),
    Case("reduce_mean_channels", CHW, [("ReduceMean", ["x"], {"axes": [1], "keepdims": 0})]),
    Case("reduce_l2_channels", CHW, [("ReduceL2", ["x"], {"axes": [1], "keepdims": 0})]),
    Case("normalize_channels", CHW, [("ReduceL2", ["x"], {"axes": [1], "keepdims": 1}),  # torch's F.normalize
                                     ("Clip", ["x1", "eps"], {}), ("Div", ["x", "x2"], {})], {"eps": c(1e-12)}),
    Case("reduce_l1_spatial", CHW, [("ReduceL1", ["x"], {"axes": [2, 3], "keepdims": 1})], kinks=(0.0,)),
    Case("lp_normalization_l2_channels", CHW, [("LpNormalization", ["x"], {"axis": 1, "p": 2})]),
    Case("lp_normalization_l1_last_axis", CHW, [("LpNormalization", ["x"], {"p": 1})], kinks=(0.0,)),
    Case("where_isnan", CHW, [("IsNaN", ["x"], {}), ("Where", ["x1", "zero", "x"], {})], {"zero": c(0.0)}),
    Case("batchnorm", CHW, [("BatchNormalization", ["x", "g", "b", "m", "v"], {"epsilon": 1e-3})],
         {"g": r(10, 3), "b": r(11, 3), "m": r(12, 3), "v": np.abs(r(13, 3)) + 0.5}),
    Case("layernorm", (4, 6), [("LayerNormalization", ["x", "g", "b"], {"axis": -1})],
         {"g": r(14, 6) + 1, "b": r(15, 6)}),
    Case("instancenorm", CHW, [("InstanceNormalization", ["x", "g", "b"], {"epsilon": 1e-5})],
         {"g": r(16, 3) + 1, "b": r(17, 3)}),
    Case("groupnorm_as_torch_writes_it", (4, 3, 3), [("Reshape", ["x", "groups"], {}),
                                                     ("InstanceNormalization", ["x1", "ones", "zeros"], {}),
                                                     ("Reshape", ["x2", "back"], {})],
         {"groups": np.array([0, 2, -1], np.int64), "ones": c(1, 1), "zeros": c(0, 0),
          "back": np.array([0, 4, 3, 3], np.int64)}),
    Case("conv_s1_pad1", CHW, [("Conv", ["x", "w", "b"], {"pads": [1, 1, 1, 1]})],
         {"w": r(16, 4, 3, 3, 3), "b": r(17, 4)}),
    Case("conv_s2_pad1", (3, 5, 5), [("Conv", ["x", "w"], {"pads": [1, 1, 1, 1], "strides": [2, 2]})],
         {"w": r(18, 2, 3, 3, 3)}),
    Case("conv_depthwise", CHW, [("Conv", ["x", "w"], {"group": 3, "pads": [1, 1, 1, 1]})], {"w": r(19, 3, 1, 3, 3)}),
    Case("conv_dilated", (3, 6, 6), [("Conv", ["x", "w"], {"dilations": [2, 2]})], {"w": r(20, 2, 3, 2, 2)}),
    Case("conv_same_upper_s2", (3, 5, 5), [("Conv", ["x", "w"], {"strides": [2, 2], "auto_pad": "SAME_UPPER"})],
         {"w": r(21, 2, 3, 3, 3)}),
    Case("conv_many_channels_s1", (9, 3, 3), [("Conv", ["x", "w"], {"pads": [0, 1, 0, 1]})], {"w": r(22, 2, 9, 1, 3)}),
    Case("concat_two_paths", CHW, [("Sigmoid", ["x"], {}), ("Concat", ["x", "x1"], {"axis": 1})]),
    Case("concat_itself", CHW, [("Concat", ["x", "x"], {"axis": 2})]),
    Case("pad", CHW, [("Pad", ["x", "pads"], {})], {"pads": np.asarray([0, 0, 1, 2, 0, 1, 0, 1], np.int64)}),
    # transformer blocks: tokens [N, T, C]
    Case("erf", TC, [("Erf", ["x"], {})], step=1e-3, tolerance=1e-3),
    Case("gelu_exact", TC, [("Gelu", ["x"], {})], opset=20, step=1e-3, tolerance=1e-3),
    Case("gelu_tanh", TC, [("Gelu", ["x"], {"approximate": "tanh"})], opset=20),
    Case("sqrt", TC, [("Sqrt", ["x"], {})], positive=True),
    Case("exp_neg", TC, [("Exp", ["x"], {}), ("Neg", ["x1"], {})]),
    Case("pow_cube", TC, [("Pow", ["x", "p"], {})], {"p": c(3.0)}),
    Case("div_by_a_norm", TC,
         [("ReduceSum", ["x", "ax"], {"keepdims": 1}), ("Sqrt", ["x1"], {}), ("Div", ["x", "x2"], {})],
         {"ax": np.asarray([2], np.int64)}, positive=True),
    Case("softmax_last", TC, [("Softmax", ["x"], {"axis": -1})]),
    Case("softmax_tokens", TC, [("Softmax", ["x"], {"axis": 1})]),
    Case("log_softmax", TC, [("LogSoftmax", ["x"], {"axis": -1})]),
    Case("matmul_tokens_weight", TC, [("MatMul", ["x", "w"], {})], {"w": r(30, 6, 5)}),
    Case("matmul_weight_tokens", TC, [("MatMul", ["w", "x"], {})], {"w": r(31, 3, 4)}),
    Case("attention", TC, [("Transpose", ["x"], {"perm": [0, 2, 1]}), ("MatMul", ["x", "x1"], {}),
                           ("Softmax", ["x2"], {"axis": -1}), ("MatMul", ["x3", "x"], {})]),
    Case("reduce_sum_tokens", TC, [("ReduceSum", ["x", "ax"], {"keepdims": 0})], {"ax": np.asarray([1], np.int64)}),
    Case("slice_tokens", TC, [("Slice", ["x", "s", "e", "ax"], {})],
         {"s": np.asarray([1], np.int64), "e": np.asarray([3], np.int64), "ax": np.asarray([1], np.int64)}),
    Case("slice_negative_two_axes", TC, [("Slice", ["x", "s", "e", "ax"], {})],
         {"s": np.asarray([-3, 1], np.int64), "e": np.asarray([100, -1], np.int64),
          "ax": np.asarray([1, 2], np.int64)}),
    Case("gather_class_token", TC, [("Gather", ["x", "i"], {"axis": 1})], {"i": np.asarray(0, np.int64)}),
    Case("gather_token_run", TC, [("Gather", ["x", "i"], {"axis": 1})], {"i": np.asarray([1, 2, 3], np.int64)}),
    Case("gather_tokens_repeated", TC, [("Gather", ["x", "i"], {"axis": 1})], {"i": np.asarray([3, 0, 3], np.int64)}),
    Case("gather_channels", TC, [("Gather", ["x", "i"], {"axis": -1})], {"i": np.asarray([[5, 1], [2, 2]], np.int64)}),
    Case("expand", (1, 6), [("Expand", ["x", "shape"], {})], {"shape": np.asarray([1, 4, 6], np.int64)}),
    Case("slice_every_other_row_and_column", CHW, [("Slice", ["x", "s", "e", "a", "st"], {})],
         {"s": np.array([0, 1], np.int64), "e": np.array([4, 4], np.int64), "a": np.array([2, 3], np.int64),
          "st": np.array([2, 2], np.int64)}),
    Case("slice_flipped_channels", CHW, [("Slice", ["x", "s", "e", "a", "st"], {})],
         {"s": np.array([-1], np.int64), "e": np.array([-(2**62)], np.int64), "a": np.array([1], np.int64),
          "st": np.array([-1], np.int64)}),
    Case("where_constant", TC, [("Where", ["cond", "x", "b"], {})],
         {"cond": np.random.default_rng(32).random((4, 6)) > 0.5, "b": r(33, 4, 6)}),
]  # fmt: skip


def _inputs(case: Case, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = int(np.prod(case.shape)) * N
    if case.distinct:  # spaced far beyond the difference step: no ties, whatever the window
        x = (rng.permutation(size) - size / 2).astype(np.float64) * 0.05 + 0.013
    else:
        x = rng.normal(0, 1.2, size)
    if case.positive:
        x = np.abs(x) % 2.0 + 0.5
    for kink in case.kinks:
        near = np.abs(x - kink) < 0.05
        x[near] = kink + np.where(x[near] >= kink, 0.05, -0.05)
    return x.reshape(N, *case.shape).astype(np.float32)


def _forward(case: Case, dtype: int, constants: dict[str, np.ndarray]) -> Any:
    nodes = []
    previous = "x"
    for i, (op_type, inputs, attributes) in enumerate(case.nodes):
        out = f"x{i + 1}"
        nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"n{i}", **attributes))
        previous = out
    nodes.append(helper.make_node("Flatten", [previous], ["logits"], name="flat", axis=1))
    graph = helper.make_graph(
        nodes, case.name, [helper.make_tensor_value_info("x", dtype, [None, *case.shape])],
        [helper.make_tensor_value_info("logits", dtype, None)],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 9
    return model


def _as64(constants: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in constants.items()}


def backward_of(case: Case, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """[N, K, *shape]: the gradients the rules of ops/ build, run in onnxruntime (float32)."""
    import onnxruntime as ort

    model = _forward(case, TensorProto.FLOAT, case.constants)
    model.graph.input.append(helper.make_tensor_value_info("classes", TensorProto.INT64, [None, K]))
    shapes = static_shapes(model)
    head_nodes = tuple(model.graph.node)
    head = Head("x", "NCHW", "logits", head_nodes, shapes, shapes["logits"][0])
    backward = build_backward(GraphBuilder(model), head, "classes", pooled=False)
    assert backward.gradients is not None
    model.graph.output.append(helper.make_tensor_value_info(backward.gradients, TensorProto.FLOAT, None))
    passes.drop_dead(model)
    passes.topological_sort(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([backward.gradients], {"x": x, "classes": classes})[0]


class LpNormalization(OpRun):
    """The spec's L1 norm: onnx's reference sums x, not |x|, for p = 1 (onnxruntime takes |x|)."""

    op_domain = ""

    def _run(self, x: np.ndarray, axis: int = -1, p: int = 2) -> tuple[np.ndarray]:
        norm = np.power(np.power(np.abs(x), p).sum(axis=axis, keepdims=True), 1.0 / p)
        return ((x / norm).astype(x.dtype),)


def central_differences(case: Case, x: np.ndarray, classes: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """[N, K, *shape]: d logits[n, classes[n, k]] / d x[n] in float64, every element perturbed at once."""
    evaluator = ReferenceEvaluator(_forward(case, TensorProto.DOUBLE, _as64(case.constants)), new_ops=[LpNormalization])
    x64 = x.astype(np.float64)
    size = int(np.prod(case.shape))
    basis = np.eye(size).reshape(size, *case.shape) * step
    batch = np.concatenate([x64[n][None] + sign * basis for n in range(N) for sign in (1, -1)])
    logits = evaluator.run(None, {"x": batch})[0].reshape(N, 2, size, -1)
    picked = np.stack([logits[n][:, :, classes[n]] for n in range(N)])  # [N, 2, size, K]
    derivative = (picked[:, 0] - picked[:, 1]) / (2 * step)  # [N, size, K]
    return derivative.transpose(0, 2, 1).reshape(N, K, *case.shape)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_rule_matches_central_differences(case: Case) -> None:
    x = _inputs(case)
    outputs = int(np.prod(ReferenceEvaluator(_forward(case, TensorProto.FLOAT, case.constants))
                          .run(None, {"x": x[:1]})[0].shape[1:]))  # fmt: skip
    classes = np.random.default_rng(1).integers(0, outputs, (N, K)).astype(np.int64)
    got = backward_of(case, x, classes)
    want = central_differences(case, x, classes, case.step)
    scale = max(float(np.abs(want).max()), 1e-3)
    assert got.shape == want.shape
    error = np.abs(got - want).max()
    assert error <= case.tolerance * scale + 1e-5, f"{case.name}: {error:.2e}"


def test_every_rule_is_exercised_on_its_own() -> None:
    covered = {op for case in CASES for op, _, _ in case.nodes}
    assert set(SUPPORTED_OPS) <= covered, sorted(set(SUPPORTED_OPS) - covered)
    assert covered <= set(OPS)
