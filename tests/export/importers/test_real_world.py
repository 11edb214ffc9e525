"""Files as torch's exporters write them, on real photos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.helpers.optional import needs
from tests.helpers.torch_models import (
    TorchCase,
    _convnext,
    _densenet,
    _features_avgpool_classifier,
    _resnet,
    _timm,
    _timm_split,
    _torchvision,
    build_model,
    reference,
)

needs("torchvision")
needs("timm")
needs("onnxscript")
from realtime import contract  # noqa: E402
from realtime.engines.local import LocalEngine  # noqa: E402
from realtime.engines.providers import EngineOptions  # noqa: E402
from realtime.export.checks.run import GraphRunner, run_onnx  # noqa: E402
from realtime.export.pipeline import ExportConfig, ExportError, export  # noqa: E402
from realtime.export.preprocessing import PRESETS, preprocess_numpy  # noqa: E402
from tests.helpers.classifiers import tiny_classifier  # noqa: E402

torch = needs("torch")


skimage_data = needs("skimage.data")


def _regnet(m: Any) -> Any:
    return lambda x: m.trunk_output(m.stem(x)), lambda a: m.fc(torch.flatten(m.avgpool(a), 1))


@dataclass(frozen=True)
class Source:
    """How the ONNX file was made: torch's default exporter, or the classic one at an opset."""

    case: TorchCase
    exporter: str  # "dynamo" | "classic"
    opset: int = 17

    @property
    def name(self) -> str:
        return f"{self.case.name}_{self.exporter}{self.opset if self.exporter == 'classic' else ''}"


CORPUS = [
    Source(TorchCase("resnet18", _torchvision("resnet18"), _resnet), "dynamo"),
    Source(TorchCase("mobilenet_v3_small", _torchvision("mobilenet_v3_small"), _features_avgpool_classifier), "dynamo"),
    Source(TorchCase("efficientnet_b0", _torchvision("efficientnet_b0"), _features_avgpool_classifier), "dynamo"),
    Source(TorchCase("regnet_y_400mf", _torchvision("regnet_y_400mf"), _regnet), "dynamo"),
    Source(TorchCase("densenet121", _torchvision("densenet121"), _densenet), "dynamo"),
    Source(TorchCase("convnext_tiny", _torchvision("convnext_tiny"), _convnext), "dynamo"),  # as_strided
    Source(TorchCase("resnet18", _torchvision("resnet18"), _resnet), "classic", 11),
    Source(TorchCase("mobilenet_v3_small", _torchvision("mobilenet_v3_small"), _features_avgpool_classifier),
           "classic", 17),
    Source(TorchCase("tf_efficientnet_b0", _timm("tf_efficientnet_b0"), _timm_split), "classic", 17),
    Source(TorchCase("tf_mobilenetv3_small_100", _timm("tf_mobilenetv3_small_100"), _timm_split), "classic", 17),
    Source(TorchCase("tf_efficientnet_lite0", _timm("tf_efficientnet_lite0"), _timm_split), "classic", 17),
]  # fmt: skip


def to_onnx(model: Any, source: Source, path: Path) -> Path:
    """The file as a user makes it: `torch.onnx.export(model, (x,), path)` for dynamo, nothing else."""
    x = torch.zeros(1, 3, 224, 224)
    if source.exporter == "dynamo":
        torch.onnx.export(model, (x,), str(path))
    else:
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=source.opset, input_names=["input"],
            output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
        )  # fmt: skip
    return path


def photos() -> np.ndarray:
    """Three real photographs (an astronaut, a cat, a cup of coffee) at 224x224, BGR uint8."""
    rgb = [skimage_data.astronaut(), skimage_data.chelsea(), skimage_data.coffee()]
    return np.stack([cv2.resize(image[..., ::-1], (224, 224), interpolation=cv2.INTER_AREA) for image in rgb])


@pytest.fixture(scope="module", params=CORPUS, ids=[s.name for s in CORPUS])
def exported(request, tmp_path_factory):
    source: Source = request.param
    folder = tmp_path_factory.mktemp(source.name)
    model = build_model(source.case)
    onnx_file = to_onnx(model, source, folder / f"{source.name}.onnx")
    result = export(ExportConfig(onnx=onnx_file, output=folder / f"{source.name}_gradcam.onnx", quiet=True))
    return source, model, onnx_file, result


def test_matches_torch_autograd_on_real_photos(exported) -> None:
    source, model, _, result = exported
    images = photos()
    x = preprocess_numpy(images, PRESETS["torch"], "NCHW")
    run = GraphRunner(result.output)  # one session for every photo
    for i in range(len(images)):  # batch 1, as the suite's time budget asks
        targets = np.array([[-1, 7]], np.int64)
        got = run(images[i : i + 1], targets)
        ref = reference(source.case, model, x[i : i + 1], targets, at=got["activations"])
        where = f"{source.name} photo {i}"
        peak = np.abs(ref["body_activations"]).max()
        assert np.abs(got["activations"] - ref["body_activations"]).max() <= 1e-4 * peak, where  # the default layer
        scale = np.abs(ref["logits"]).max()
        assert np.abs(got["logits"] - ref["logits"]).max() <= 1e-4 * scale, where
        np.testing.assert_array_equal(got["classes"], ref["classes"], err_msg=where)  # top-1 (and class 7)
        assert np.abs(got["cam"] - ref["cam"]).max() <= 1e-3, where
        weights_scale = max(np.abs(ref["weights"]).max(), 1e-12)
        assert np.abs(got["weights"] - ref["weights"]).max() <= 1e-4 * weights_scale, where


def test_the_graph_takes_a_batch_and_says_so(exported) -> None:
    """Every corpus model's batch could be freed (dynamo's baked-in 1 included): batch 3 in one call."""
    source, _, _, result = exported
    engine = LocalEngine(result.output, EngineOptions(providers="cpu", warmup=0))
    assert engine.info.max_batch is None and not result.static_batch, source.name
    images = photos()
    together = engine.run(images, [[-1]])
    for i in range(3):
        alone = engine.run(images[i : i + 1], [[-1]])
        np.testing.assert_allclose(together.cam[i], alone.cam[0], atol=1e-5)


def test_a_failed_export_touches_nothing(exported, tmp_path: Path) -> None:
    """The input file and its external data stay as they were; no output appears."""
    source, _, onnx_file, _ = exported
    before = {p.name: p.read_bytes() for p in onnx_file.parent.glob(f"{source.name}.onnx*")}
    out = tmp_path / "out.onnx"
    with pytest.raises(ExportError, match="no-such-tensor"):
        export(ExportConfig(onnx=onnx_file, layer="no-such-tensor", output=out, quiet=True))
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert {p.name: p.read_bytes() for p in onnx_file.parent.glob(f"{source.name}.onnx*")} == before


def test_a_newer_ir_version_than_onnxruntime_reads_is_lowered(tmp_path: Path) -> None:
    import onnx

    source = tiny_classifier(tmp_path / "new_ir.onnx", ir_version=onnx.IR_VERSION)
    assert onnx.load(str(source)).ir_version > 10  # what onnx's helper writes today
    result = export(ExportConfig(onnx=source, output=tmp_path / "g.onnx", preprocessing="raw", quiet=True))
    assert onnx.load(str(result.output)).ir_version <= 10
    assert result.check is not None and result.check.ok()


def test_a_trailing_log_softmax_is_looked_through(tmp_path: Path) -> None:
    """Grad-CAM explains the logits: the graph's logits are the Gemm's, before the LogSoftmax."""
    import onnxruntime as ort

    source = tiny_classifier(tmp_path / "log_softmax.onnx", ir_version=9, log_softmax=True)
    graph = export(ExportConfig(onnx=source, output=tmp_path / "g.onnx", preprocessing="raw", quiet=True)).output
    image = np.random.default_rng(3).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    got = run_onnx(graph, image, np.array([[-1]], np.int64))
    log_probabilities = ort.InferenceSession(str(source)).run(
        None, {"x": image.astype(np.float32).transpose(0, 3, 1, 2)[:, ::-1].copy()}
    )[0]
    shifted = got["logits"] - got["logits"].max(axis=1, keepdims=True)
    np.testing.assert_allclose(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)), log_probabilities,
                               atol=1e-4)  # fmt: skip
    assert not np.allclose(got["logits"], log_probabilities, atol=1e-3)


def test_a_batch_that_cannot_be_freed_stays_one_and_the_runtime_feeds_sources_one_by_one(tmp_path: Path) -> None:
    """Gather(x, [0]) on the batch axis: batch 2 gives both images the first one's logits, so the graph
    is kept at batch 1 (metadata says so), and the engine and the live loop call it once per image."""
    from realtime import GradCam

    source = tiny_classifier(tmp_path / "static.onnx", lambda h: [h.make_node("Gather", ["x", "first"], ["picked"],
                                                                                 axis=0)])  # fmt: skip
    result = export(ExportConfig(onnx=source, output=tmp_path / "g.onnx", preprocessing="raw", quiet=True))
    assert result.static_batch
    engine = LocalEngine(result.output, EngineOptions(providers="cpu", warmup=0))
    assert engine.info.max_batch == 1
    calls: list[int] = []
    run = engine.session.run
    engine.session.run = lambda names, feeds: calls.append(len(feeds[contract.INPUT_IMAGE])) or run(names, feeds)
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    both = engine.run(images, [[-1]])
    assert calls == [1, 1]  # one call per image
    for i in range(2):
        alone = engine.run(images[i : i + 1], [[-1]])
        np.testing.assert_allclose(both.cam[i], alone.cam[0], atol=1e-6)
        np.testing.assert_allclose(both.logits[i], alone.logits[0], rtol=1e-6)
    explained = GradCam(result.output, providers="cpu", warmup=0).batch([images[0], images[1]])
    assert len(explained) == 2
    np.testing.assert_allclose(explained[1].maps[0].shape, explained[0].maps[0].shape)


def test_two_sources_on_a_static_batch_graph_in_the_live_loop(tmp_path: Path) -> None:
    from realtime.live import cli
    from tests.helpers.video import count_frames, write_video

    source = tiny_classifier(tmp_path / "static.onnx", lambda h: [h.make_node("Gather", ["x", "first"], ["picked"],
                                                                                 axis=0)])  # fmt: skip
    graph = export(ExportConfig(onnx=source, output=tmp_path / "g.onnx", preprocessing="raw", quiet=True)).output
    clips = [write_video(tmp_path / f"clip{i}.mp4", 5) for i in range(2)]
    out = tmp_path / "out.avi"
    argv = ["--model", str(graph), "--source", str(clips[0]), "--source", str(clips[1]), "--no-window",
            "--providers", "cpu", "--record", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    assert count_frames(out) >= 4


def test_a_flat_gather_of_permuted_channels_becomes_a_per_image_gather(tmp_path: Path) -> None:
    """dynamo's as_strided form, Reshape(x, [-1]) -> Gather(flat indices [1, C, 1, 1]), here permuting the
    pooled channels: the graph takes a batch, and each channel's weight is the weight of the logit it feeds,
    fc[j, k] / (H W) for the position j it was moved to, worked out by hand."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(6)
    order = np.array([3, 1, 0, 2])
    fc = rng.normal(0, 0.3, (4, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["feat"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["feat"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),
        helper.make_node("Reshape", ["pooled", "minus_one"], ["flat"]),
        helper.make_node("Gather", ["flat", "order"], ["as_strided"], axis=0),
        helper.make_node("Flatten", ["as_strided"], ["picked"]),
        helper.make_node("Gemm", ["picked", "fc"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(fc, "fc"), numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
             numpy_helper.from_array(order.reshape(1, 4, 1, 1), "order")]  # fmt: skip
    graph = helper.make_graph(
        nodes, "strided", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], inits,
    )  # fmt: skip
    source = tmp_path / "strided.onnx"
    source.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
                       .SerializeToString())  # fmt: skip
    result = export(ExportConfig(onnx=source, output=tmp_path / "g.onnx", preprocessing="raw", quiet=True))
    assert not result.static_batch and result.check is not None and result.check.ok()
    images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    got = run_onnx(result.output, images, np.array([[-1], [-1]], np.int64))
    for i in range(2):
        k = int(got["classes"][i, 0])
        expected = np.array([fc[int(np.flatnonzero(order == c)[0]), k] for c in range(4)]) / (16 * 16)
        np.testing.assert_allclose(got["weights"][i, 0], expected, rtol=1e-5, err_msg=f"image {i}")


def test_a_graph_over_the_inline_limit_is_written_with_external_data(tmp_path: Path, monkeypatch) -> None:
    """Over protobuf's 2 GB (here: a limit of 1 kB), the graph and NAME.onnx.data land together, checked."""
    from realtime.export.graph import writing

    monkeypatch.setattr(writing, "INLINE_LIMIT", 1024)
    monkeypatch.setattr(writing, "EXTERNAL_THRESHOLD", 64)  # the weights out, the small shape constants in
    source = tiny_classifier(tmp_path / "small.onnx", ir_version=9)
    out = tmp_path / "out" / "g.onnx"
    result = export(ExportConfig(onnx=source, output=out, preprocessing="raw", quiet=True))
    assert result.check is not None and result.check.ok()
    written = sorted(p.name for p in out.parent.iterdir())
    assert len(written) == 2 and written[0] == "g.onnx" and written[1].endswith(".data")  # no temporary folder
    image = np.random.default_rng(4).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    external = run_onnx(out, image, np.array([[-1]]))
    monkeypatch.setattr(writing, "INLINE_LIMIT", 2**31 - 2**24)
    inline = export(ExportConfig(onnx=source, output=tmp_path / "inline.onnx", preprocessing="raw", quiet=True)).output
    for name, value in run_onnx(inline, image, np.array([[-1]])).items():  # the same weights, read from the data
        np.testing.assert_allclose(external[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
    export(ExportConfig(onnx=source, output=out, preprocessing="raw", quiet=True))  # again: the old data goes
    assert sorted(p.name for p in out.parent.iterdir()) == ["g.onnx"]
