"""int8 graphs: the forms for each CPU, calibration, fidelity."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime.quantization")
import re

from realtime import GradCam, contract
from realtime.demo.models import demo_model_paths
from realtime.engines import int8_cpu
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.export.variants.int8 import calibration, quantize
from realtime.live import cli
from tests.helpers.classifiers import export_small, small_classifier_onnx
from tests.helpers.commands import run_in_process
from tests.helpers.video import count_frames, write_video

onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def fair_int8(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("int8")
    images = calibration.calibration_images("demo", (224, 224), 32)
    fp32 = demo_model_paths()["fair"]
    return {
        "fp32": fp32,
        **{scope: quantize.quantize(fp32, folder / f"fair_{scope}.onnx", images, scope) for scope in quantize.SCOPES},
    }


@pytest.mark.parametrize("scope", list(quantize.SCOPES))
def test_fair_model_int8_fidelity(fair_int8, scope: str) -> None:
    held, masks = calibration.demo_holdout(100, (224, 224))
    result = calibration.fidelity(fair_int8["fp32"], fair_int8[scope], held, masks)
    assert result.top1_agreement >= 0.99
    assert result.map_correlation >= 0.995  # on every CPU: the graph is made for this one (realtime.cpu)
    assert result.pointing_fp32 is not None and result.pointing_int8 is not None
    assert result.pointing_int8 >= result.pointing_fp32 - 0.02
    assert result.ok()


def test_int8_graph_keeps_the_contract_and_really_is_int8(fair_int8) -> None:
    engine = LocalEngine(fair_int8["forward"], EngineOptions(providers="cpu", warmup=0))
    assert engine.info.precision == "int8 (forward)"
    assert engine.has_gradients and engine.info.labels == ("elephant", "penguin")
    model = onnx.load(str(fair_int8["forward"]))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 5
    # the analytic backward stays fp32: no quantized node reads a gradient
    gemm_or_back = [n for n in model.graph.node if n.op_type in ("Gemm",)]
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in gemm_or_back:
        assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in node.input[:1])
    out = engine.run(np.zeros((1, 224, 224, 3), np.uint8), [[-1, -1]])
    assert out.cam.shape == (1, 2, 28, 28) and np.isfinite(out.cam).all()


def test_scope_all_makes_the_backward_products_int8_and_keeps_the_gradients(fair_int8) -> None:
    model = onnx.load(str(fair_int8["all"]))
    ops = [n.op_type for n in model.graph.node]
    assert "DynamicQuantizeMatMul" in ops and "Gemm" not in ops  # the fc backward (6272x32) is int8
    image = calibration.demo_holdout(4, (224, 224))[0]
    reference = LocalEngine(fair_int8["forward"], EngineOptions(providers="cpu", warmup=0)).run(image, [[0, 1]])
    quantized = LocalEngine(fair_int8["all"], EngineOptions(providers="cpu", warmup=0)).run(image, [[0, 1]])
    assert reference.gradients is not None and quantized.gradients is not None
    # same int8 forward, so the difference is the backward's alone: gradients and channel weights agree
    for a, b in ((reference.gradients, quantized.gradients), (reference.weights, quantized.weights)):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


# the vnni form only where u8s8 products do not saturate (on x86, CPUs with VNNI): elsewhere it is not the
# form gradcam-export picks, and the no-vnni case is the one that applies
TARGETS = [int8_cpu.NO_VNNI] + ([] if int8_cpu.detect().saturates else [int8_cpu.VNNI])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("trans", [0, 1])
def test_backward_products_by_hand(trans: int, target: str) -> None:
    """Gemm(W, g^T, transA) becomes DynamicQuantizeMatMul; small weights and other Gemms are left alone.

    The no-vnni form (u8 weights, u8u8 kernels) is within 3% on every CPU; the vnni form (s8 weights)
    only where u8s8 products do not saturate, which on x86 needs VNNI (3.6% off on a Zen 3 without it).
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    # y^T = op(W) @ g^T with op(W) [300 in, 128 out]: W stored [128, 300] with transA=1, or [300, 128]
    op_big, small = rng.normal(0, 0.05, (300, 128)).astype(np.float32), rng.normal(0, 0.05, (8, 128)).astype(np.float32)
    big = np.ascontiguousarray(op_big.T if trans else op_big)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["big", "gt"], ["y"], transA=trans, name="backward"),
            helper.make_node("Gemm", ["small", "gt"], ["z"], name="tiny"),
        ],
        "g",
        [helper.make_tensor_value_info("gt", TensorProto.FLOAT, [128, 2])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, None]) for n in ("y", "z")],
        [numpy_helper.from_array(big, "big"), numpy_helper.from_array(small, "small")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    assert quantize.quantize_backward_products(model, min_bytes=big.nbytes, target=target) == 1
    assert [n.op_type for n in model.graph.node] == ["Transpose", "DynamicQuantizeMatMul", "Transpose", "Gemm"]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert "big" not in inits  # the fp32 copy is gone
    weights, zero = inits["big_int8"], inits["big_int8_zero"]
    assert weights.dtype == (np.uint8 if target == int8_cpu.NO_VNNI else np.int8)
    assert (zero == (128 if target == int8_cpu.NO_VNNI else 0)).all()
    gt = rng.normal(0, 1, (128, 2)).astype(np.float32)
    y, z = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"gt": gt})
    assert np.linalg.norm(y - op_big @ gt) / np.linalg.norm(op_big @ gt) < 0.03
    np.testing.assert_allclose(z, small @ gt, rtol=1e-5, atol=1e-6)


FAKE_ZEN3 = int8_cpu.CpuInt8("Fake Zen 3", x86=True, vnni=())


FAKE_ICELAKE = int8_cpu.CpuInt8("Fake Ice Lake", x86=True, vnni=("avx512_vnni",))


def _backward_weight_types(path: Path) -> set[int]:
    model = onnx.load(str(path))
    inits = {i.name: i.data_type for i in model.graph.initializer}
    return {inits[n.input[1]] for n in model.graph.node if n.op_type == "DynamicQuantizeMatMul"}


def test_export_on_a_cpu_without_vnni_writes_the_safe_form_and_says_so(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setattr(int8_cpu, "detect", lambda: FAKE_ZEN3)
    output = export_small(tmp_path, "full", output=tmp_path / "zen3.onnx", int8=True, calibration_count=8, quiet=False)
    said = capsys.readouterr().err
    assert "int8 for no-vnni CPUs" in said and "Fake Zen 3 (no VNNI)" in said and "u8u8" in said
    meta = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert meta[contract.META_INT8_TARGET] == int8_cpu.NO_VNNI
    assert meta[contract.META_INT8_CPU] == "Fake Zen 3 (no VNNI)"
    assert _backward_weight_types(output) == {onnx.TensorProto.UINT8}
    assert LocalEngine(output, EngineOptions(providers="cpu", warmup=0)).cpu_warning is None  # made for it


def test_a_vnni_graph_on_a_cpu_without_vnni_gets_one_warning(monkeypatch, small_models, tmp_path: Path, capsys):
    images = calibration.calibration_images("demo", (64, 64), 8)
    monkeypatch.setattr(int8_cpu, "detect", lambda: FAKE_ICELAKE)
    graph = quantize.quantize(small_models["full"], tmp_path / "icelake.onnx", images, "all")
    assert _backward_weight_types(graph) == {onnx.TensorProto.INT8}
    assert LocalEngine(graph, EngineOptions(providers="cpu", warmup=0)).cpu_warning is None
    monkeypatch.setattr(int8_cpu, "detect", lambda: FAKE_ZEN3)
    warning = LocalEngine(graph, EngineOptions(providers="cpu", warmup=0)).cpu_warning
    assert warning is not None and "quantized for CPUs with VNNI" in warning and "--int8-cpu no-vnni" in warning
    video = write_video(tmp_path / "in.mp4", 3)
    argv = ["--source", str(video), "--model", str(graph), "--model", str(graph), "--no-window", "--providers", "cpu"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().err.count("quantized for CPUs with VNNI") == 1  # one line, not one per model
    with pytest.warns(RuntimeWarning, match="--int8-cpu no-vnni"):
        GradCam(graph, providers="cpu", warmup=0)


def test_gradcam_live_runs_an_int8_model_unchanged(fair_int8, tmp_path: Path) -> None:
    video = write_video(tmp_path / "in.mp4", 6)
    out = tmp_path / "out.avi"
    argv = ["--source", str(video), "--model", str(fair_int8["forward"]), "--no-window", "--providers", "cpu"]
    assert cli.main([*argv, "--record", str(out), "--method", "gradcam++"]) == 0
    assert count_frames(out) == 6


def test_forward_nodes_never_include_the_backward(small_models) -> None:
    model = onnx.load(str(small_models["full"]))
    inits = {i.name for i in model.graph.initializer}
    chosen = set(quantize.forward_nodes(model, "forward"))
    for node in model.graph.node:
        if node.name in chosen and node.op_type in ("MatMul", "Gemm"):
            assert node.input[1] in inits and node.input[0] not in inits  # x @ W only
        if node.op_type in ("MatMul", "Gemm") and node.input[0] in inits:  # the backward's W @ g^T
            assert node.name not in chosen
    convs_only = set(quantize.forward_nodes(model, "convs"))
    assert not any(n.op_type == "MatMul" for n in model.graph.node if n.name in convs_only)


def test_calibration_sources(tmp_path: Path, capsys) -> None:
    assert calibration.calibration_images("random", (32, 32), 3).shape == (3, 32, 32, 3)
    assert "smoke tests only" in capsys.readouterr().err
    with pytest.raises(quantize.QuantizeError, match="--save-frames"):
        calibration.calibration_images(str(tmp_path), (32, 32), 3)
    cv2.imwrite(str(tmp_path / "a.png"), np.full((50, 70), 100, np.uint8))  # grey, odd size
    cv2.imwrite(str(tmp_path / "b.jpg"), np.full((40, 40, 3), 20, np.uint8))
    assert calibration.calibration_images(str(tmp_path), (32, 32), 8).shape == (2, 32, 32, 3)
    with pytest.raises(quantize.QuantizeError, match="not demo, random or a folder"):
        calibration.calibration_images(str(tmp_path / "missing"), (32, 32), 3)


def test_export_int8_end_to_end(tmp_path: Path) -> None:
    from realtime.export.pipeline import ExportConfig, export

    source = small_classifier_onnx(tmp_path / "small.onnx")
    result = export(
        ExportConfig(
            onnx=source, gradients="pooled", layer="last_conv", output=tmp_path / "small_int8.onnx", int8=True,
            calibration="demo", calibration_count=8, quiet=True,
        )
    )  # fmt: skip
    meta = {p.key: p.value for p in onnx.load(str(result.output)).metadata_props}
    assert (
        meta[contract.META_PRECISION] == f"int8 ({quantize.DEFAULT_SCOPE})"
        and meta[contract.META_GRADIENTS] == "pooled"
    )
    assert result.fidelity is not None and 0.0 <= result.fidelity.top1_agreement <= 1.0


def test_save_frames_collects_calibration_data(small_models, tmp_path: Path) -> None:
    video = write_video(tmp_path / "in.mp4", 31)
    folder = tmp_path / "frames"
    argv = ["--source", str(video), "--model", str(small_models["pooled"]), "--no-window", "--providers", "cpu"]
    assert cli.main([*argv, "--save-frames", str(folder)]) == 0
    saved = sorted(folder.glob("*.jpg"))
    assert len(saved) == 3  # frames 0, 15 and 30
    assert cv2.imread(str(saved[0])).shape == (480, 640, 3)  # the camera frame, not the overlay
    assert calibration.calibration_images(str(folder), (64, 64), 8).shape == (3, 64, 64, 3)


def test_bad_int8_scope_fails_before_any_export_work() -> None:
    from realtime.export.pipeline import ExportConfig, ExportError, export

    with pytest.raises(ExportError, match="--int8-scope 'everything'"):
        export(ExportConfig(int8=True, int8_scope="everything", weights="no-such-file.h5"))


def _steps(stderr: str) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for m in re.finditer(r"^\[(\d+)/(\d+)\]", stderr, re.MULTILINE)]


def test_int8_with_too_few_calibration_frames_says_so_and_checks_on_the_demo_scenes(
    tiny_onnx: Path, tmp_path: Path
) -> None:  # fmt: skip
    """8 saved frames: too few to hold any out. The check is not skipped in silence: one note says how many
    it needs, and the fidelity figures come from the demo scenes; the quantizer's advice is not shown."""
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        cv2.imwrite(str(calib / f"f{i}.jpg"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    proc = run_in_process(
        "realtime.export.cli",
        "--onnx",
        str(tiny_onnx),
        "--output",
        str(tmp_path / "q.onnx"),
        "--int8",
        "--calibration",
        str(calib),
    )
    assert proc.returncode == 0, proc.stderr
    assert f"note: --calibration {calib} has 8 images; the fidelity check needs 40 (32 to calibrate, 8 held out)" in (
        proc.stderr
    )
    assert "checked on the demo scenes instead" in proc.stderr and "--max-frames 600" in proc.stderr
    assert re.search(r"images 100, top1_agreement \d\.\d+, map_correlation", proc.stderr), proc.stderr
    assert "Please consider" not in proc.stderr and "pre-processing" not in proc.stderr
    steps = _steps(proc.stderr)
    assert steps[-1] == (6, 6), proc.stderr
