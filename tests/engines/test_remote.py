"""A served model (engines.remote) against a real Triton server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from realtime import contract
from realtime.export.checks.run import run_onnx
from realtime.export.triton.repository import TritonOptions, write_repository
from tests.helpers.optional import needs

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
    from tests.helpers import triton_server
    from tests.helpers.torch_models import torchvision_onnx

    work = tmp_path_factory.mktemp("triton")
    source = torchvision_onnx("mobilenet_v3_small", work)
    mobilenet = work / "mobilenet_v3_small_gradcam_full.onnx"
    export(ExportConfig(onnx=source, gradients="full", output=mobilenet, quiet=True, self_check=False))
    graphs = {"fair": _fair(), "mobilenet": mobilenet}
    repo = work / "repo"
    for name, graph in graphs.items():
        write_repository(graph, repo, name, TritonOptions(backend="python", device="cpu", max_batch_size=4))
    try:
        server = triton_server.start(repo, work)
    except triton_server.TritonUnavailable as exc:
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


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_served_model_is_an_engine_like_a_local_one(served, scheme: str) -> None:
    """RemoteEngine reads the contract from the server and gives Engine's results; GradCam takes the address."""
    from realtime import GradCam
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions
    from realtime.engines.remote import RemoteEngine

    server, graphs = served
    host = server.grpc if scheme == "grpc" else server.http
    remote = RemoteEngine(f"{scheme}://{host}/mobilenet", EngineOptions(warmup=1))
    local = LocalEngine(graphs["mobilenet"], EngineOptions(providers="cpu", warmup=0))
    assert remote.info == local.info  # labels, layers, shapes and profile, all from the server
    image = np.random.default_rng(9).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    for need in (False, True):
        got, want = remote.run(image, [[-1, 5]], need_gradients=need), local.run(image, [[-1, 5]], need_gradients=need)
        assert np.array_equal(got.classes, want.classes) and got.classes.dtype == np.int64
        assert np.abs(got.cam - want.cam).max() <= TOLERANCE and np.abs(got.weights - want.weights).max() <= TOLERANCE
        assert (got.gradients is None) == (not need)  # only the outputs the method needs travel
    frame = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    explained = GradCam(f"{scheme}://{host}/fair", warmup=0)(frame)
    assert explained.maps.ndim == 3 and explained.labels[0] in ("elephant", "penguin")
    assert explained.overlay(frame).shape == frame.shape


def test_gradcam_live_through_triton_records_a_clip(served, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers.video import count_frames, write_video

    server, _ = served
    clip, out = write_video(tmp_path / "clip.mp4", 12), tmp_path / "out.webm"
    run = subprocess.run(
        [sys.executable, "-m", "realtime.live.cli", "--model", f"grpc://{server.grpc}/fair", "--source", str(clip),
         "--no-window", "--record", str(out)],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-1500:]
    assert "Triton at grpc://" in run.stderr and count_frames(out) >= 10
    refused = subprocess.run(
        [sys.executable, "-m", "realtime.live.cli", "--model", f"grpc://{server.grpc}/nosuch", "--source", str(clip),
         "--no-window"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and "cannot read the model from the server" in lines[-1], refused.stderr


def _live_again(shown: list, frames: int) -> bool:
    """Whether the last `frames` shown panels are live ones that came after a "reconnecting" panel."""
    labels = [frame.huds[0].label for frame in list(shown)]
    lost = [i for i, label in enumerate(labels) if "reconnecting" in label]
    return bool(lost) and len(labels) - lost[-1] - 1 >= frames


def test_a_lost_server_shows_the_lost_panel_and_the_view_recovers(served, tmp_path: Path) -> None:
    """The live loop on a served model: the server killed mid-run gives "lost: reconnecting" panels (the
    loop goes on), and real maps come back once a server is up again at the same address."""
    import threading
    import time

    from realtime.engines.remote import RemoteEngine
    from realtime.live.loop import Loop
    from realtime.outputs.controls import Controls
    from realtime.sources.group import SourceSet
    from tests.helpers import triton_server
    from tests.helpers.collect import Collect
    from tests.helpers.sources import LoopSource, synthetic_frames

    repo = tmp_path / "repo"
    write_repository(_fair(), repo, "fair", TritonOptions(backend="python", device="cpu", max_batch_size=4))
    first = triton_server.start(repo, tmp_path)
    engine = RemoteEngine(f"grpc://{first.grpc}/fair")
    said: list[str] = []
    engine.say = said.append
    collect = Collect()
    with SourceSet([LoopSource(synthetic_frames(8), 30.0)]) as readers:
        loop = Loop([engine], readers, Controls(), [collect], display="model")
        servers = [first]

        def kill_and_restart() -> None:
            try:
                time.sleep(1.5)
                first.process.kill()
                first.process.wait()
                time.sleep(1.0)
                ports = (first.grpc_port, first.http_port)
                servers.append(triton_server.start(repo, tmp_path / "again", ports=ports))
                deadline = time.monotonic() + 30.0  # a loaded CI machine reconnects in seconds, not at once
                while time.monotonic() < deadline and not _live_again(collect.shown, frames=12):
                    time.sleep(0.1)
            finally:  # a restart that fails ends the loop too (the assertions then say what was seen)
                loop.stop_requested = True

        (tmp_path / "again").mkdir()
        thread = threading.Thread(target=kill_and_restart)
        thread.start()
        try:
            loop.run(max_frames=3000)
        finally:
            thread.join()
            for server in servers:
                server.stop()
    states = ["lost" if "reconnecting" in shown.huds[0].label else "live" for shown in collect.shown]
    runs = [state for i, state in enumerate(states) if i == 0 or state != states[i - 1]]
    assert runs == ["live", "lost", "live"], runs
    assert states.count("lost") >= 5 and states[-10:] == ["live"] * 10
    assert len(said) == 2 and "reconnecting" in said[0] and "the server is back" in said[1]


def test_http_serves_gradcam_live_for_60_frames_and_the_api_from_a_thread_pool(served, tmp_path: Path) -> None:
    """tritonclient's HTTP client works only on the thread that made it; the engine's calls come from the
    inference thread, and the API's from any thread. Every frame answered, none lost."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from realtime import GradCam
    from tests.helpers.video import count_frames, write_video

    server, graphs = served
    clip, out = write_video(tmp_path / "clip.mp4", 60), tmp_path / "out.webm"
    run = subprocess.run(
        [sys.executable, "-m", "realtime.live.cli", "--model", f"http://{server.http}/fair", "--source", str(clip),
         "--no-window", "--record", str(out)],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-1500:]
    assert "did not answer" not in run.stderr and "lost" not in run.stderr, run.stderr[-1500:]
    assert "60 frames shown" in run.stderr and count_frames(out) == 60
    served_cam, local = GradCam(f"http://{server.http}/fair", warmup=0), GradCam(graphs["fair"], providers="cpu")
    frames = [np.random.default_rng(i).integers(0, 256, (120, 160, 3), dtype=np.uint8) for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(served_cam, frames))
    for frame, answer in zip(frames, answers, strict=True):
        want = local(frame)
        assert answer.classes == want.classes and np.abs(answer.maps - want.maps).max() <= 1e-5


def test_a_slow_then_silent_server_never_freezes_the_view_and_sigterm_ends_it_at_once(served, tmp_path: Path) -> None:
    """The server's answers trickle in a byte at a time, then stop altogether: the camera-rate view goes on at
    the source's rate (the whole answer has a deadline; then frames are not held up by the server at all), and
    SIGTERM ends the run within 3 s with the recording playable (it took three signals and a traceback)."""
    import re
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers.slow_proxy import SlowProxy
    from tests.helpers.video import count_frames

    server, _ = served
    proxy, out = SlowProxy(server.http), tmp_path / "out.webm"
    live = subprocess.Popen(
        [sys.executable, "-m", "realtime.live.cli", "--demo", "--model", f"http://{proxy.address}/fair",
         "--display", "camera", "--no-window", "--record", str(out)],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        time.sleep(6)  # started, answering
        proxy.mode = "trickle"
        time.sleep(4)
        proxy.mode = "silent"
        time.sleep(7)  # past the deadline, while probes go unanswered
        start = time.monotonic()
        live.send_signal(signal.SIGTERM)
        _, err = live.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        proxy.close()
        if live.poll() is None:
            live.kill()
    assert live.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert took < 3.0, f"SIGTERM took {took:.1f} s"
    fps = float(re.search(r"frames shown \([^)]*\); ([0-9.]+) FPS", err).group(1))  # type: ignore[union-attr]
    assert fps >= 0.8 * 30, err[-1500:]
    assert "reconnecting" in err and count_frames(out) > 100
