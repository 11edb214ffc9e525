"""The onnxruntime engine: loading, checking, results, its fp16 copy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from realtime import contract
from realtime.contract import ContractError
from realtime.demo.models import demo_model_paths
from realtime.engines.graph_file import ModelNotFoundError
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.export.pipeline import ExportConfig


def test_fp16_copies_are_named_where_the_runtime_looks(resnet18) -> None:
    assert contract.fp16_copy(Path("m/vgg16_gradcam_pooled.onnx")) == Path("m/vgg16_gradcam_pooled_fp16.onnx")
    assert contract.fp16_copy(Path("m/x_fp16.onnx")) == Path("m/x_fp16.onnx")
    from realtime.export.config import default_output

    fp32 = ExportConfig(onnx=Path("resnet18.onnx"), gradients="pooled")
    assert default_output(
        ExportConfig(onnx=Path("resnet18.onnx"), gradients="pooled", fp16=True)
    ) == contract.fp16_copy(default_output(fp32))
    engine = LocalEngine(resnet18["fp16"], EngineOptions(providers="cpu", warmup=0))  # on a CPU: said, and it runs
    assert "fp16 graph is for GPUs" in engine.notice and engine.info.precision == "fp16"


def test_an_fp16_copy_counts_only_when_it_is_the_same_models(resnet18) -> None:
    """The runtime takes the _fp16 copy beside a graph on CUDA only when its metadata says it is that model."""
    import onnxruntime as ort

    from realtime.engines.graph_file import same_model

    def session(path: Path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    assert same_model(session(resnet18["fp16"]), session(resnet18["fp32"]))
    assert not same_model(session(demo_model_paths()["fair"]), session(resnet18["fp32"]))


def test_missing_model_says_run_gradcam_export(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="gradcam-export"):
        LocalEngine(tmp_path / "nope.onnx", EngineOptions(providers="cpu"))


def test_garbage_file_is_a_contract_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not onnx")
    with pytest.raises(ContractError, match="not a loadable ONNX model"):
        LocalEngine(bad, EngineOptions(providers="cpu"))


def test_forward_only_graph_names_the_missing_outputs(small_models) -> None:
    with pytest.raises(ContractError, match=r"classes.*weights.*cam"):
        LocalEngine(small_models["none"], EngineOptions(providers="cpu"))


def test_result_is_frozen_and_matches_the_graph(small_models) -> None:
    engine = LocalEngine(small_models["full"], EngineOptions(providers="cpu"))
    assert engine.info.labels == ("cat", "dog", "bird", "snow leopard")
    assert (engine.info.input_height, engine.info.map_height, engine.info.num_classes) == (64, 32, 4)
    image = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    result = engine.run(image, [[-1, 2]])
    assert result.classes.shape == (2, 2) and (result.classes[:, 1] == 2).all()
    assert (result.classes[:, 0] == result.logits.argmax(axis=1)).all()
    assert result.gradients is not None and result.gradients.shape == (2, 2, 32, 32, 16)
    top = result.top(0, 3)
    assert top[0][0] == int(result.classes[0, 0]) and top[0][1] in engine.info.labels
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.seconds = 0.0  # type: ignore[misc]


def test_gradients_are_skipped_when_not_needed(small_models) -> None:
    engine = LocalEngine(small_models["full"], EngineOptions(providers="cpu", warmup=0))
    result = engine.run(np.zeros((1, 64, 64, 3), np.uint8), [[-1]], need_gradients=False)
    assert result.gradients is None and result.cam.shape == (1, 1, 32, 32)


def test_bad_targets_and_images_are_rejected(small_models) -> None:
    engine = LocalEngine(small_models["pooled"], EngineOptions(providers="cpu", warmup=0))
    image = np.zeros((1, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="class id 9"):
        engine.run(image, [[9]])
    with pytest.raises(ValueError, match="top-k 5"):
        engine.run(image, [[-1] * 5])
    with pytest.raises(ValueError, match=r"\[N,64,64,3\]"):
        engine.run(np.zeros((1, 32, 32, 3), np.uint8), [[-1]])
