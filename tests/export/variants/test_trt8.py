"""The TensorRT 8 profile: types, ops, LayerNormalization spelled out."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest

from realtime import contract
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.export.checks import portable
from realtime.export.checks.run import run_onnx
from realtime.export.graph.shapes import element_types
from realtime.export.pipeline import ExportConfig, export
from realtime.export.variants import trt8
from tests.helpers.optional import needs
from tests.helpers.second_runtime import assert_same_in_openvino
from tests.helpers.video import random_frames

# onnx-tensorrt, branch release/8.5-GA, docs/operators.md: the rows marked Y ("TensorRT 8.5 supports
# operators up to Opset 17"). JetPack 6's TensorRT 8.6 takes at least these.
TENSORRT_85_GA = frozenset(
    """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSwish HardSigmoid Identity If ImageScaler
InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike
Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split()  # noqa: SIM905
)


T = onnx.TensorProto


def _assert_trt8_graph(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert ops <= TENSORRT_85_GA, sorted(ops - TENSORRT_85_GA)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 17
    edges = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)}
    assert edges[contract.INPUT_IMAGE] == T.FLOAT and edges[contract.INPUT_TARGETS] == T.INT32
    assert edges[contract.OUT_CLASSES] == T.INT32 and set(edges.values()) <= {T.FLOAT, T.INT32}
    inside = set(element_types(model).values()) | {i.data_type for i in model.graph.initializer}
    assert inside <= {T.FLOAT, T.INT32, T.INT64, T.BOOL}, inside
    return model


def test_trt8_profile_types_ops_and_the_same_maps(resnet18) -> None:
    _assert_trt8_graph(resnet18["trt8"])
    image, targets = random_frames((224, 224), 3, seed=3), np.array([[-1, 4], [7, -1], [-1, -1]], np.int64)
    want, got = run_onnx(resnet18["fp32"], image, targets), run_onnx(resnet18["trt8"], image, targets)
    assert got["classes"].dtype == np.int32 and np.array_equal(got["classes"], want["classes"])
    for name in (contract.OUT_LOGITS, contract.OUT_WEIGHTS, contract.OUT_CAM):
        assert np.abs(got[name] - want[name]).max() <= 1e-6 * max(1.0, np.abs(want[name]).max()), name
    assert_same_in_openvino(resnet18["trt8"], image, targets)
    # the runtime reads both kinds: uint8 frames in, int64 classes out, the same answer
    plain = LocalEngine(resnet18["fp32"], EngineOptions(providers="cpu", warmup=0)).run(image, targets)
    profiled = LocalEngine(resnet18["trt8"], EngineOptions(providers="cpu", warmup=0)).run(image, targets)
    assert profiled.classes.dtype == np.int64 and np.array_equal(profiled.classes, plain.classes)
    assert np.abs(profiled.cam - plain.cam).max() <= 1e-6


def test_trt8_spells_out_layer_normalization_on_deit(tmp_path: Path) -> None:
    """DeiT-tiny's LayerNorms become ReduceMean/Sub/Mul/Add/Sqrt/Div: the same maps, in both runtimes."""
    torch = needs("torch")
    timm = needs("timm")
    from tests.helpers.torch_models import export_onnx

    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    source = export_onnx(model, tmp_path / "deit.onnx")
    graphs = {}
    for name, extra in (("fp32", {}), ("trt8", {"trt8": True})):
        graphs[name] = tmp_path / f"deit_{name}.onnx"
        config = ExportConfig(onnx=source, gradients="pooled", output=graphs[name], quiet=True, self_check=False)
        export(dataclasses.replace(config, **extra))
    assert "LayerNormalization" in {n.op_type for n in onnx.load(str(graphs["fp32"])).graph.node}
    _assert_trt8_graph(graphs["trt8"])
    image, targets = random_frames((224, 224), 2, seed=5), np.array([[-1], [3]], np.int64)
    want, got = run_onnx(graphs["fp32"], image, targets), run_onnx(graphs["trt8"], image, targets)
    for name in (contract.OUT_LOGITS, contract.OUT_WEIGHTS, contract.OUT_CAM):
        assert np.abs(got[name] - want[name]).max() <= 1e-4 * max(1.0, np.abs(want[name]).max()), name
    assert_same_in_openvino(graphs["trt8"], image, targets)


def test_the_trt8_check_refuses_what_tensorrt_8_cannot_parse(resnet18, tmp_path: Path) -> None:
    model = onnx.load(str(resnet18["fp32"]))
    with pytest.raises(portable.GraphCheckError, match="uint8"):  # the default profile's image
        portable.check_portable(resnet18["fp32"], "fp32", model, contract.PROFILE_TRT8)
    profiled = trt8.to_trt8(model)
    norm = onnx.helper.make_node("LayerNormalization", [contract.OUT_LOGITS + "/x", "s"], ["y"], name="ln")
    profiled.graph.node.append(norm)
    with pytest.raises(portable.GraphCheckError, match="LayerNormalization"):
        portable.check_portable(resnet18["trt8"], "fp32", profiled, contract.PROFILE_TRT8)
    portable.check_portable(resnet18["trt8"], "fp32", onnx.load(str(resnet18["trt8"])), contract.PROFILE_TRT8)
