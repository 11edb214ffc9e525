"""The Triton model repository the exporter writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from realtime import contract
from realtime.export.triton.repository import TritonOptions, TritonRepoError, write_repository
from realtime.export.variants import trt8
from tests.helpers.commands import ROOT
from tests.helpers.optional import needs

ORT_TO_TRITON = {"tensor(float)": "TYPE_FP32", "tensor(uint8)": "TYPE_UINT8", "tensor(int64)": "TYPE_INT64",
                 "tensor(int32)": "TYPE_INT32"}  # fmt: skip


def _fair() -> Path:
    from realtime.demo.models import demo_model_paths

    return demo_model_paths()["fair"]


def _parsed(folder: Path):
    needs("tritonclient")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _assert_matches_the_graph(config, graph: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    for declared, values in ((config.input, session.get_inputs()), (config.output, session.get_outputs())):
        assert [t.name for t in declared] == [v.name for v in values]
        for tensor, value in zip(declared, values, strict=True):
            from tritonclient.grpc import model_config_pb2

            assert model_config_pb2.DataType.Name(tensor.data_type) == ORT_TO_TRITON[value.type], tensor.name
            want = [d if isinstance(d, int) else -1 for d in value.shape[1:]]  # the batch axis is Triton's
            assert list(tensor.dims) == want, tensor.name
    meta = session.get_modelmeta().custom_metadata_map
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params == dict(meta) and json.loads(params[contract.META_LABELS]) == ["elephant", "penguin"]


def test_the_repository_parses_as_triton_config_and_matches_the_graph(tmp_path: Path) -> None:
    folder = write_repository(_fair(), tmp_path / "repo", "fair")
    config = _parsed(folder)
    assert config.name == "fair" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.kind, g.count) for g in config.instance_group] == [(config.instance_group[0].KIND_GPU, 1)]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    _assert_matches_the_graph(config, _fair())
    image = next(t for t in config.input if t.name == contract.INPUT_IMAGE)
    assert list(image.dims) == [224, 224, 3]
    assert (folder / "1" / "model.onnx").read_bytes() == _fair().read_bytes()
    assert sorted(p.name for p in folder.rglob("*")) == ["1", "config.pbtxt", "model.onnx"]  # no temporaries


def test_the_tensorrt_accelerator_and_the_trt8_profile(tmp_path: Path) -> None:
    profiled = tmp_path / "fair_trt8.onnx"
    onnx.save(trt8.to_trt8(onnx.load(str(_fair()))), str(profiled))
    options = TritonOptions(max_batch_size=4, instances=2, device="cpu", tensorrt="fp16", queue_delay_us=100)
    config = _parsed(write_repository(profiled, tmp_path / "repo", options=options))
    assert config.name == "fair_trt8" and config.max_batch_size == 4
    assert [(g.kind, g.count) for g in config.instance_group] == [(config.instance_group[0].KIND_CPU, 2)]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and dict(accelerator.parameters) == {"precision_mode": "FP16"}
    _assert_matches_the_graph(config, profiled)  # float32 image, int32 targets and classes


def test_bad_requests_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(TritonRepoError, match="that is a file"):
        write_repository(_fair(), afile)
    with pytest.raises(TritonRepoError, match="model name"):
        write_repository(_fair(), tmp_path / "repo", "a b/c")
    with pytest.raises(TritonRepoError, match="choose fp16 or fp32"):
        write_repository(_fair(), tmp_path / "repo", options=TritonOptions(tensorrt="int4"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(TritonRepoError, match="not a loadable ONNX graph"):
        write_repository(broken, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_gradcam_export_writes_the_repository_beside_the_graph(tmp_path: Path) -> None:
    from tests.helpers.classifiers import tiny_classifier

    source = tiny_classifier(tmp_path / "tiny.onnx", ir_version=9)
    out, repo = tmp_path / "models" / "tiny_gradcam.onnx", tmp_path / "triton"
    run = subprocess.run(
        [sys.executable, "-m", "realtime.export.cli", "--onnx", str(source), "--gradients", "pooled", "--output",
         str(out), "--triton-repo", str(repo), "--triton-tensorrt", "fp32", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Triton repository" in run.stdout
    config = _parsed(repo / "tiny_gradcam")
    assert (
        config.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters["precision_mode"] == "FP32"
    )
    assert (repo / "tiny_gradcam" / "1" / "model.onnx").read_bytes() == out.read_bytes()
    refused = subprocess.run(
        [sys.executable, "-m", "realtime.export.cli", "--onnx", str(source), "--output", str(tmp_path / "x.onnx"),
         "--triton-tensorrt", "fp16"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and "add --triton-repo DIR" in lines[0], refused.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_a_graph_with_its_batch_baked_in_is_not_batched_by_triton(tmp_path: Path) -> None:
    """gradcam.batch = 1 (a batch the importer could not free): max_batch_size 0, the full dims, no batcher."""
    from realtime.export.graph.builder import set_metadata

    model = onnx.load(str(_fair()))
    set_metadata(model, contract.META_BATCH, "1")
    for value in (*model.graph.input, *model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = 1
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    config = _parsed(write_repository(fixed, tmp_path / "repo"))
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    image = next(t for t in config.input if t.name == contract.INPUT_IMAGE)
    assert list(image.dims) == [1, 224, 224, 3]
