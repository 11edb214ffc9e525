"""A real Triton Inference Server serves the Grad-CAM graphs (issue: Beyond one box).

The server is NVIDIA's `tritonserver` from the nvidia-pytriton wheel, in a venv of its own made from the
system Python (scripts/triton_local.py); it loads the Python-backend variant of the repository that
gradcam-export writes (the same code, the same config.pbtxt fields), where onnxruntime runs the graph.
Over gRPC and over HTTP the answers equal the in-process ones (1e-6), and the labels come from the
server's model config. Where the server cannot run here the tests skip with the reason; in CI that is
a failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from realtime import contract
from realtime.export.checks.run import run_onnx
from realtime.export.triton_repo import TritonOptions, write_repository
from tests.conftest import needs

TOLERANCE = 1e-6


def _fair() -> Path:
    from realtime.demo.models import demo_model_paths

    return demo_model_paths()["fair"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, {model name: graph}) with the demo's fair model and a torchvision MobileNetV3-small graph."""
    needs("tritonclient")
    needs("torch")
    from realtime.export.pipeline import ExportConfig, export
    from scripts import triton_local
    from scripts.gpu_graphs import torchvision_onnx

    work = tmp_path_factory.mktemp("triton")
    source = torchvision_onnx("mobilenet_v3_small", work)
    mobilenet = work / "mobilenet_v3_small_gradcam_full.onnx"
    export(ExportConfig(onnx=source, gradients="full", output=mobilenet, quiet=True, self_check=False))
    graphs = {"fair": _fair(), "mobilenet": mobilenet}
    repo = work / "repo"
    for name, graph in graphs.items():
        write_repository(graph, repo, name, TritonOptions(backend="python", device="cpu", max_batch_size=4))
    try:
        server = triton_local.start(repo, work)
    except triton_local.TritonUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the Triton server does not run here: {exc}")
        pytest.skip(f"the Triton server does not run here: {exc}")
    yield server, graphs
    server.stop()


def _client(protocol: str, server):
    if protocol == "grpc":
        import tritonclient.grpc as client

        return client, client.InferenceServerClient(server.grpc)
    import tritonclient.http as client

    return client, client.InferenceServerClient(server.http)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_server_gives_the_in_process_answers_and_the_labels(served, protocol: str) -> None:
    server, graphs = served
    module, client = _client(protocol, server)
    image = np.random.default_rng(4).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    targets = np.array([[-1, 1], [0, -1]], np.int64)
    for name, graph in graphs.items():
        want = run_onnx(graph, image, targets)
        inputs = [module.InferInput(contract.INPUT_IMAGE, list(image.shape), "UINT8"),
                  module.InferInput(contract.INPUT_TARGETS, list(targets.shape), "INT64")]  # fmt: skip
        inputs[0].set_data_from_numpy(image)
        inputs[1].set_data_from_numpy(targets)
        asked = [contract.OUT_LOGITS, contract.OUT_CLASSES, contract.OUT_WEIGHTS, contract.OUT_CAM]
        result = client.infer(name, inputs, outputs=[module.InferRequestedOutput(n) for n in asked])
        for output in asked:
            got = result.as_numpy(output)
            scale = max(1.0, float(np.abs(want[output]).max()))
            assert got.shape == want[output].shape and np.abs(got - want[output]).max() <= TOLERANCE * scale, output
        assert result.as_numpy(contract.OUT_GRADIENTS) is None  # only the asked outputs travel
        config = client.get_model_config(name)
        parameters = config.config.parameters if protocol == "grpc" else config["parameters"]
        raw = parameters[contract.META_LABELS]
        labels = json.loads(raw.string_value if protocol == "grpc" else raw["string_value"])
        assert len(labels) == want[contract.OUT_LOGITS].shape[1]
        if name == "fair":
            assert labels == ["elephant", "penguin"]
