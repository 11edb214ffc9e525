"""Edge GPUs in the product, the parts a CPU can check (issue: Edge GPUs in the product).

- fp16 copies: uint8 in, fp32 out, the softmax and the cam normalisation in fp32; fidelity against
  the fp32 graph on the demo scenes (the trained demo model) and on seeded random weights, as
  onnxruntime runs the fp16 graph and with every half-precision tensor rounded; OpenVINO agrees.
- the TensorRT 8 profile: float32 image, int32 targets and classes, only ops of onnx-tensorrt's
  release/8.5-GA operator list (written out below, independently of the op table), opset 17, the
  same maps as the default graph in onnxruntime and in OpenVINO, LayerNormalization spelled out.
- the CUDA-graph engine's fixed shapes and bindings, run on CPU buffers against the plain engine.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from realtime import contract
from realtime.engine import Engine, EngineOptions
from realtime.export import fp16, trt8
from realtime.export.checks import portable
from realtime.export.checks.run import run_onnx
from realtime.export.graph.shapes import element_types
from realtime.export.pipeline import ExportConfig, export
from realtime.replay import Replays, fix_dims
from tests.conftest import needs
from tests.second_runtime import assert_same_in_openvino

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


def _demo_fair() -> Path:
    from realtime.demo.models import demo_model_paths

    return demo_model_paths()["fair"]


def _frames(size: tuple[int, int], n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory) -> dict[str, Path]:
    """torchvision ResNet18 with seeded random weights: its default, fp16 and trt8 graphs (pooled)."""
    needs("torch")
    from tests.torch_models import CASES, TorchCase, build_model, export_onnx

    folder = tmp_path_factory.mktemp("resnet18")
    case = TorchCase("resnet18", _resnet18, CASES["resnet50"].split)
    source = export_onnx(build_model(case), folder / "resnet18.onnx")
    graphs = {}
    for name, extra in (("fp32", {}), ("fp16", {"fp16": True}), ("trt8", {"trt8": True})):
        out = folder / f"resnet18_{name}.onnx"
        config = ExportConfig(onnx=source, gradients="pooled", output=out, quiet=True, **extra)
        result = export(config)
        graphs[name] = out
        if name == "fp16":
            graphs["fp16_fidelity"] = result.fidelity
    return graphs


def _resnet18():
    import torchvision

    return torchvision.models.resnet18(weights=None)


def test_fp16_keeps_the_contract_types_and_the_fp32_parts(resnet18) -> None:
    model = onnx.load(str(resnet18["fp16"]))
    edges = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)}
    assert edges[contract.INPUT_IMAGE] == T.UINT8 and edges[contract.INPUT_TARGETS] == T.INT64
    assert all(edges[o] == T.FLOAT for o in (contract.OUT_LOGITS, contract.OUT_WEIGHTS, contract.OUT_CAM))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[contract.META_PRECISION] == "fp16"
    types = element_types(model)
    made_by = {o: n for n in model.graph.node for o in n.output}
    softmax = made_by[contract.OUT_PROBABILITIES]
    assert softmax.op_type == "Softmax" and types[softmax.input[0]] == T.FLOAT  # softmax in fp32
    division = made_by[contract.OUT_CAM]
    assert division.op_type == "Div" and all(types[i] == T.FLOAT for i in division.input)  # normalisation in fp32
    halves = sum(1 for init in model.graph.initializer if init.data_type == T.FLOAT16)
    assert halves > 0.9 * sum(1 for init in model.graph.initializer if init.data_type in (T.FLOAT, T.FLOAT16))
    portable.check_portable(resnet18["fp16"], "fp16")


def test_fp16_fidelity_on_random_weights_and_in_openvino(resnet18) -> None:
    """Against fp32: the export's own demo-scene figures, and here on random frames, as onnxruntime runs
    the fp16 graph and as OpenVINO does; OpenVINO and onnxruntime agree on the fp16 graph."""
    from realtime.demo.metrics import map_correlation

    figures = resnet18["fp16_fidelity"]
    assert figures.images == 24 and figures.top1_agreement == 1.0 and figures.rounded_top1_agreement == 1.0
    assert min(figures.map_correlation, figures.rounded_map_correlation) >= 0.99
    image, targets = _frames((224, 224), 4, seed=7), np.full((4, 1), -1, np.int64)
    want = run_onnx(resnet18["fp32"], image, targets)
    targets = want["classes"][:, :1].astype(np.int64)  # a copy: OpenVINO refuses onnxruntime's int64 view
    got = run_onnx(resnet18["fp16"], image, targets)
    ov = needs("openvino")
    compiled = ov.Core().compile_model(str(resnet18["fp16"]), "CPU")
    theirs = compiled({contract.INPUT_IMAGE: image, contract.INPUT_TARGETS: targets})
    ov_cam = np.asarray(theirs[compiled.output(contract.OUT_CAM)])
    assert np.array_equal(np.argmax(got["logits"], 1), want["classes"][:, 0])
    for i in range(4):
        assert map_correlation(want["cam"][i, 0], got["cam"][i, 0]) >= 0.99
        assert map_correlation(want["cam"][i, 0], ov_cam[i, 0]) >= 0.99
    assert np.abs(ov_cam - got["cam"]).max() < 0.05


def test_fp16_of_the_trained_demo_model_on_the_demo_scenes(tmp_path: Path) -> None:
    """The fair demo model (weights trained here), its fp16 copy and the rounded one, on held-out scenes."""
    from realtime.export import variants

    source = _demo_fair()
    half = tmp_path / "fair_fp16.onnx"
    onnx.save(fp16.to_fp16(onnx.load(str(source))), str(half))
    figures = variants._fidelity(source, half, fp16.rounded_like_fp16(onnx.load(str(source))), (224, 224))
    assert figures.top1_agreement == 1.0 and figures.rounded_top1_agreement == 1.0
    assert figures.map_correlation >= 0.99 and figures.rounded_map_correlation >= 0.99
    rounded = fp16.rounded_like_fp16(onnx.load(str(source)))  # the rounding is real: not the fp32 graph
    rounded_path = tmp_path / "rounded.onnx"
    onnx.save(rounded, str(rounded_path))
    image, targets = _frames((224, 224), 2), np.array([[-1], [-1]], np.int64)
    exact, emulated = run_onnx(source, image, targets), run_onnx(rounded_path, image, targets)
    assert 0 < np.abs(exact["logits"] - emulated["logits"]).max() < 1e-2 * np.abs(exact["logits"]).max()


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
    image, targets = _frames((224, 224), 3, seed=3), np.array([[-1, 4], [7, -1], [-1, -1]], np.int64)
    want, got = run_onnx(resnet18["fp32"], image, targets), run_onnx(resnet18["trt8"], image, targets)
    assert got["classes"].dtype == np.int32 and np.array_equal(got["classes"], want["classes"])
    for name in (contract.OUT_LOGITS, contract.OUT_WEIGHTS, contract.OUT_CAM):
        assert np.abs(got[name] - want[name]).max() <= 1e-6 * max(1.0, np.abs(want[name]).max()), name
    assert_same_in_openvino(resnet18["trt8"], image, targets)
    # the runtime reads both kinds: uint8 frames in, int64 classes out, the same answer
    plain = Engine(resnet18["fp32"], EngineOptions(providers="cpu", warmup=0)).run(image, targets)
    profiled = Engine(resnet18["trt8"], EngineOptions(providers="cpu", warmup=0)).run(image, targets)
    assert profiled.classes.dtype == np.int64 and np.array_equal(profiled.classes, plain.classes)
    assert np.abs(profiled.cam - plain.cam).max() <= 1e-6


def test_trt8_spells_out_layer_normalization_on_deit(tmp_path: Path) -> None:
    """DeiT-tiny's LayerNorms become ReduceMean/Sub/Mul/Add/Sqrt/Div: the same maps, in both runtimes."""
    torch = needs("torch")
    timm = needs("timm")
    from tests.torch_models import export_onnx

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
    image, targets = _frames((224, 224), 2, seed=5), np.array([[-1], [3]], np.int64)
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


def test_a_cuda_graph_replay_is_the_plain_engine_on_cpu_buffers(tmp_path: Path) -> None:
    """The replay's fixed shapes and bindings, with CPU buffers: every frame is copied into the bound
    input (a stale buffer would repeat the first frame's answer), one replay per (batch, targets)."""
    import onnxruntime as ort

    path = _demo_fair()
    plain = Engine(path, EngineOptions(providers="cpu", warmup=0))
    made: list[Any] = []

    def cpu_session(batch: int, targets: int):
        options = ort.SessionOptions()
        fix_dims(options, batch, targets)
        made.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
        return made[-1]

    replays = Replays(cpu_session, plain._every_output, device="cpu")
    wanted = [contract.OUT_LOGITS, contract.OUT_CLASSES, contract.OUT_CAM, contract.OUT_WEIGHTS]
    for batch, k in ((1, 1), (3, 2), (1, 1), (3, 2)):
        for seed in range(3):
            frames = _frames((224, 224), batch, seed=10 * batch + seed)
            targets = np.full((batch, k), -1, np.int64)
            got = replays.run({contract.INPUT_IMAGE: frames, contract.INPUT_TARGETS: targets}, wanted)
            want = plain.run(frames, targets)
            assert got is not None
            assert np.array_equal(got[contract.OUT_CLASSES], want.classes)
            assert np.abs(got[contract.OUT_CAM] - want.cam).max() <= 1e-5
            assert np.abs(got[contract.OUT_LOGITS] - want.logits).max() <= 1e-4
    assert replays.captured == ((1, 1), (3, 2)) and len(made) == 2
    assert [i.shape for i in made[1].get_inputs()] == [[3, 224, 224, 3], [3, 2]]  # every dim fixed


def test_a_failed_capture_says_one_line_and_runs_without(tmp_path: Path) -> None:
    lines: list[str] = []

    def refuses(batch: int, targets: int):
        raise RuntimeError("CUDA graph capture is not supported for this graph\nsecond line")

    plain = Engine(_demo_fair(), EngineOptions(providers="cpu", warmup=0))
    replays = Replays(refuses, plain._every_output, device="cpu", say=lines.append)
    feeds = {contract.INPUT_IMAGE: _frames((224, 224), 1), contract.INPUT_TARGETS: np.full((1, 1), -1, np.int64)}
    assert replays.run(feeds, [contract.OUT_CAM]) is None and replays.run(feeds, [contract.OUT_CAM]) is None
    assert lines == ["CUDA graph for batch 1 x 1 targets failed (CUDA graph capture is not supported for this "
                     "graph); running it without"]  # fmt: skip
    assert replays.captured == ()
    notice = Engine(_demo_fair(), EngineOptions(providers="cpu", warmup=0, cuda_graph=True)).notice
    assert "--cuda-graph needs the CUDA provider" in notice


def test_fp16_copies_are_named_where_the_runtime_looks(resnet18) -> None:
    assert contract.fp16_copy(Path("m/vgg16_gradcam_pooled.onnx")) == Path("m/vgg16_gradcam_pooled_fp16.onnx")
    assert contract.fp16_copy(Path("m/x_fp16.onnx")) == Path("m/x_fp16.onnx")
    from realtime.export.config import default_output

    fp32 = ExportConfig(onnx=Path("resnet18.onnx"), gradients="pooled")
    assert default_output(
        ExportConfig(onnx=Path("resnet18.onnx"), gradients="pooled", fp16=True)
    ) == contract.fp16_copy(default_output(fp32))
    engine = Engine(resnet18["fp16"], EngineOptions(providers="cpu", warmup=0))  # on a CPU: said, and it runs
    assert "fp16 graph is for GPUs" in engine.notice and engine.info.precision == "fp16"


def test_fp16_refuses_a_model_whose_values_fp16_cannot_hold(tmp_path: Path, capsys) -> None:
    """Random-weight MobileNetV3-small's logits reach ~3e-9, below fp16's smallest subnormal: the rounded
    graph's maps are empty. The export says why in one line (exit 2) and writes nothing."""
    needs("torch")
    from realtime.export import cli
    from scripts.gpu_graphs import torchvision_onnx

    source = torchvision_onnx("mobilenet_v3_small", tmp_path)
    out = tmp_path / "out" / "small_fp16.onnx"
    code = cli.main(["--onnx", str(source), "--gradients", "pooled", "--fp16", "--output", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "largest logit is" in err[0] and "keep the fp32 graph" in err[0]
    assert not out.exists() and not out.parent.exists()


def test_an_fp16_copy_counts_only_when_it_is_the_same_models(resnet18) -> None:
    """The runtime takes the _fp16 copy beside a graph on CUDA only when its metadata says it is that model."""
    import onnxruntime as ort

    from realtime.engine import same_model

    def session(path: Path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    assert same_model(session(resnet18["fp16"]), session(resnet18["fp32"]))
    assert not same_model(session(_demo_fair()), session(resnet18["fp32"]))
