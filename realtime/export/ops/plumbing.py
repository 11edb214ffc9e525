"""Ops with no derivative rule here: the ones that carry no gradient, the ones that shape the head's
analysis (layouts, the logits), and the rest of TensorRT's parser list, so that one table answers
"does TensorRT take it" for every op a graph can hold.
"""

from __future__ import annotations

from dataclasses import replace

from realtime.export.ops.record import OpRecord

# outputs carry no gradient: shapes, indices, comparisons, rounding
_NO_GRADIENT_TENSORRT = (
    "ArgMax", "ArgMin", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not",
    "And", "Or", "ConstantOfShape", "Range", "NonZero", "Floor", "Ceil", "Round", "Sign", "IsNaN", "Mod",
)  # fmt: skip  # IsNaN: torch's scaled_dot_product_attention guards each Softmax with Where(IsNaN(p), 0, p)

# work channels-first: a tensor they make is NCHW
_ELEMENTWISE = frozenset({"Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or", "Floor",
                          "Ceil", "Round", "Sign", "IsNaN", "Mod", "IsInf", "Max", "Min", "Cast", "Reciprocal",
                          "Abs", "Cos", "Sin", "Elu", "Log", "PRelu", "Softplus", "Selu", "Mish", "Xor"})  # fmt: skip
_CHANNELS_FIRST_TENSORRT = (
    "ConvTranspose", "LpPool", "DepthToSpace", "SpaceToDepth",
)  # fmt: skip

_FP32_INPUTS: dict[str, tuple[int, ...]] = {}  # Resize's scales (resampling.py) are tensor(float) whatever X is
# an attribute sets their output's type (a value, a dtype): an fp16 copy keeps them float32 and casts after
_TYPED_BY_ATTRIBUTE = frozenset({"Constant", "ConstantOfShape", "EyeLike", "RandomNormal", "RandomNormalLike",
                                 "RandomUniform", "RandomUniformLike"})  # fmt: skip

# in onnx-tensorrt 10's operator support matrix (DeformConv since 10.1), not in 8.6-GA's
_TENSORRT10_ONLY = ("CastLike", "DeformConv", "Hardmax", "Mish")
# added in 8.6-GA's list (JetPack 6), not in 8.5-GA's (JetPack 5)
_TENSORRT86_ONLY = ("GroupNormalization",)
_NO_GRADIENT_TENSORRT86 = ("IsInf",)

# onnx-tensorrt 10.0's operator support matrix (docs/operators.md, rows marked Y), less the ops recorded
# elsewhere; its restrictions that matter here are in the records' tensorrt_note
_OTHER_TENSORRT = (
    "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Celu", "Constant", "Cos", "Cosh",
    "CumSum", "DequantizeLinear", "Einsum", "Elu", "EyeLike", "Split",
    "GatherElements", "GatherND", "GlobalLpPool", "GridSample", "GRU",
    "If", "ImageScaler", "Log", "Loop", "LRN", "LSTM",
    "Mean", "MeanVarianceNormalization", "NonMaxSuppression", "OneHot",
    "ParametricSoftplus", "PRelu", "QuantizeLinear", "RandomNormal", "RandomNormalLike", "RandomUniform",
    "RandomUniformLike", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMin", "ReduceProd",
    "ReduceSumSquare", "ReverseSequence", "RNN", "RoiAlign", "ScaledTanh", "Scan", "Scatter",
    "ScatterElements", "ScatterND", "Selu", "Shrink", "Sin", "Sinh", "Softplus", "Softsign",
    "Tan", "ThresholdedRelu", "Tile", "Trilu", "Upsample", "Xor",
)  # fmt: skip

_NOTES = {
    "TopK": "a constant K below 3840",
    "Slice": "constant axes",
    "CumSum": "a constant axis",
    "Pad": "constant pads",
    "ReduceSum": "constant axes",
    "ReduceMax": "constant axes",
    "ReduceMin": "constant axes",
    "ReduceProd": "constant axes",
}

RECORDS = tuple(
    replace(r, batch_fold="elementwise") if r.op_type in _ELEMENTWISE else r
    for r in (
        OpRecord("Shape", grad_inputs="none", tensorrt=8.5, reads_shape_only=True),
        OpRecord("Size", grad_inputs="none", tensorrt=8.5, reads_shape_only=True),
        *(
            OpRecord(op, grad_inputs="none", tensorrt=8.5, typed_by_attribute=op in _TYPED_BY_ATTRIBUTE)
            for op in _NO_GRADIENT_TENSORRT
        ),
        *(
            OpRecord(op, layout="nchw", tensorrt=8.5, fp32_inputs=_FP32_INPUTS.get(op, ()))
            for op in _CHANNELS_FIRST_TENSORRT
        ),
        *(
            OpRecord(
                op,
                tensorrt=8.5,
                tensorrt_note=_NOTES.get(op, ""),
                tensorrt_constants=(1,) if op == "CumSum" else (),
                typed_by_attribute=op in _TYPED_BY_ATTRIBUTE,
            )
            for op in _OTHER_TENSORRT
        ),
        *(OpRecord(op, tensorrt=10) for op in _TENSORRT10_ONLY),
        *(OpRecord(op, tensorrt=8.6) for op in _TENSORRT86_ONLY),
        *(OpRecord(op, grad_inputs="none", tensorrt=8.6) for op in _NO_GRADIENT_TENSORRT86),
        OpRecord("Max", grad_inputs="all", tensorrt=8.5),
        OpRecord("Min", grad_inputs="all", tensorrt=8.5),
        OpRecord("Cast", tensorrt=8.5, folds_on_constants=True),
        OpRecord("Reciprocal", tensorrt=8.5, folds_on_constants=True),
        OpRecord("TopK", tensorrt=8.5, tensorrt_note=_NOTES["TopK"], tensorrt_constants=(1,)),
    )
)
