"""Checks a graph passes before it is written: valid, in the default domain, within TensorRT's parser.

The numeric self-check of the backward lives in selfcheck.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from realtime import contract
from realtime.export.builder import model_opset

# ONNX-TensorRT 10.0's operator support matrix (docs/operators.md, rows marked Y). Restrictions that
# matter here: TopK's K < 3840, Reduce*/Slice/Squeeze/Unsqueeze/Pad axes constant, MaxPool without
# its Indices output, Dropout not training.
TENSORRT_OPS = frozenset(
    [
        "Abs",
        "Acos",
        "Acosh",
        "Add",
        "And",
        "ArgMax",
        "ArgMin",
        "Asin",
        "Asinh",
        "Atan",
        "Atanh",
        "AveragePool",
        "BatchNormalization",
        "Cast",
        "CastLike",
        "Ceil",
        "Celu",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "ConvTranspose",
        "Cos",
        "Cosh",
        "CumSum",
        "DeformConv",
        "DepthToSpace",
        "DequantizeLinear",
        "Div",
        "Dropout",
        "Einsum",
        "Elu",
        "Equal",
        "Erf",
        "Exp",
        "Expand",
        "EyeLike",
        "Flatten",
        "Floor",
        "Gather",
        "GatherElements",
        "GatherND",
        "Gelu",
        "Gemm",
        "GlobalAveragePool",
        "GlobalLpPool",
        "GlobalMaxPool",
        "Greater",
        "GreaterOrEqual",
        "GridSample",
        "GroupNormalization",
        "GRU",
        "HardSigmoid",
        "HardSwish",
        "Hardmax",
        "Identity",
        "If",
        "ImageScaler",
        "InstanceNormalization",
        "IsInf",
        "IsNaN",
        "LayerNormalization",
        "LeakyRelu",
        "Less",
        "LessOrEqual",
        "Log",
        "LogSoftmax",
        "Loop",
        "LRN",
        "LSTM",
        "LpNormalization",
        "LpPool",
        "MatMul",
        "Max",
        "MaxPool",
        "Mean",
        "MeanVarianceNormalization",
        "Min",
        "Mish",
        "Mod",
        "Mul",
        "Neg",
        "NonMaxSuppression",
        "NonZero",
        "Not",
        "OneHot",
        "Or",
        "Pad",
        "ParametricSoftplus",
        "Pow",
        "PRelu",
        "QuantizeLinear",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Range",
        "Reciprocal",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceProd",
        "ReduceSum",
        "ReduceSumSquare",
        "Relu",
        "Reshape",
        "Resize",
        "ReverseSequence",
        "RNN",
        "RoiAlign",
        "Round",
        "ScaledTanh",
        "Scan",
        "Scatter",
        "ScatterElements",
        "ScatterND",
        "Selu",
        "Shape",
        "Shrink",
        "Sigmoid",
        "Sign",
        "Sin",
        "Sinh",
        "Size",
        "Slice",
        "Softmax",
        "Softplus",
        "Softsign",
        "SpaceToDepth",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Sum",
        "Tan",
        "Tanh",
        "ThresholdedRelu",
        "Tile",
        "TopK",
        "Transpose",
        "Trilu",
        "Unsqueeze",
        "Upsample",
        "Where",
        "Xor",
    ]
)
TENSORRT_MAX_OPSET = 20
TENSORRT_TOPK_LIMIT = 3840


class GraphCheckError(RuntimeError):
    """A built graph is invalid, not portable, or disagrees with finite differences; nothing was written."""


def check_portable(path: Path, precision: str = "fp32") -> None:
    """onnx.checker (full), the default domain only (fp32), and only ops TensorRT's parser supports."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise GraphCheckError(f"the built graph fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    model = onnx.load(str(path), load_external_data=False)
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


def run_onnx(path: str | Path, image: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of a contract graph on one batch, on onnxruntime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feeds: dict[str, np.ndarray] = {contract.INPUT_IMAGE: image}
    if contract.INPUT_TARGETS in {i.name for i in session.get_inputs()}:
        feeds[contract.INPUT_TARGETS] = targets
    return dict(zip(names, session.run(names, feeds), strict=True))
