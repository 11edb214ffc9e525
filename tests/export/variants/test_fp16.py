"""fp16 copies: the contract's types kept, fidelity, and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from realtime import contract
from realtime.demo.models import demo_model_paths
from realtime.export.checks import portable
from realtime.export.checks.run import run_onnx
from realtime.export.graph.shapes import element_types
from realtime.export.variants import fp16
from tests.helpers.optional import needs
from tests.helpers.video import random_frames

T = onnx.TensorProto


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
    from realtime.maps.metrics import map_correlation

    figures = resnet18["fp16_fidelity"]
    assert figures.images == 24 and figures.top1_agreement == 1.0 and figures.rounded_top1_agreement == 1.0
    assert min(figures.map_correlation, figures.rounded_map_correlation) >= 0.99
    image, targets = random_frames((224, 224), 4, seed=7), np.full((4, 1), -1, np.int64)
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
    from realtime.export.variants import gpu

    source = demo_model_paths()["fair"]
    half = tmp_path / "fair_fp16.onnx"
    onnx.save(fp16.to_fp16(onnx.load(str(source))), str(half))
    figures = gpu._fidelity(source, half, fp16.rounded_like_fp16(onnx.load(str(source))), (224, 224))
    assert figures.top1_agreement == 1.0 and figures.rounded_top1_agreement == 1.0
    assert figures.map_correlation >= 0.99 and figures.rounded_map_correlation >= 0.99
    rounded = fp16.rounded_like_fp16(onnx.load(str(source)))  # the rounding is real: not the fp32 graph
    rounded_path = tmp_path / "rounded.onnx"
    onnx.save(rounded, str(rounded_path))
    image, targets = random_frames((224, 224), 2), np.array([[-1], [-1]], np.int64)
    exact, emulated = run_onnx(source, image, targets), run_onnx(rounded_path, image, targets)
    assert 0 < np.abs(exact["logits"] - emulated["logits"]).max() < 1e-2 * np.abs(exact["logits"]).max()


def test_fp16_refuses_a_model_whose_values_fp16_cannot_hold(tmp_path: Path, capsys) -> None:
    """Random-weight MobileNetV3-small's logits reach ~3e-9, below fp16's smallest subnormal: the rounded
    graph's maps are empty. The export says why in one line (exit 2) and writes nothing."""
    needs("torch")
    from realtime.export import cli
    from tests.helpers.torch_models import torchvision_onnx

    source = torchvision_onnx("mobilenet_v3_small", tmp_path)
    out = tmp_path / "out" / "small_fp16.onnx"
    code = cli.main(["--onnx", str(source), "--gradients", "pooled", "--fp16", "--output", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "largest logit is" in err[0] and "keep the fp32 graph" in err[0]
    assert not out.exists() and not out.parent.exists()
