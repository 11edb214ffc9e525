"""The live loop as gradcam-live runs it: display rate against model time, latency, drawing cost,
several models and sources, the soak, the browser view under load, and the camera-rate display."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.live.loop import Loop, RunSummary
from realtime.maps.query import Query
from realtime.outputs.base import Output
from realtime.outputs.controls import Controls
from realtime.sources.group import SourceSet
from realtime.view.look import Look
from scripts.bench.timing import alternate
from tests.helpers.sources import LoopSource, synthetic_frames


def _engines(models: str | Sequence[str], providers: str = "cpu") -> list[LocalEngine]:
    paths = [models] if isinstance(models, str) else list(models)
    return [LocalEngine(p, EngineOptions(providers=providers)) for p in paths]


def _loop(
    models: str | Sequence[str], frames: Sequence[np.ndarray], n: int, fps: float, sources: int = 1,
    method: str = "gradcam", display: str = "model", outputs: Sequence[Output] = (), providers: str = "cpu",
) -> tuple[RunSummary, float]:  # fmt: skip
    engines = _engines(models, providers)
    with SourceSet([LoopSource(frames, fps, f"loop {i}") for i in range(sources)]) as readers:
        start = time.perf_counter()
        summary = Loop(engines, readers, Controls(Query(method=method)), outputs, display=display).run(n)
        return summary, time.perf_counter() - start


def run_loop(
    models: str | Sequence[str], frames: Sequence[np.ndarray], n: int, fps: float, sources: int = 1,
    method: str = "gradcam", providers: str = "cpu",
) -> dict[str, Any]:  # fmt: skip
    """Display rate against the models' summed time (1.0: every result shown as soon as it is ready)."""
    summary, seconds = _loop(models, frames, n, fps, sources, method, providers=providers)
    stats = summary.stats
    stage, cpu = stats.stage_ms, stats.stage_cpu_ms
    return {
        "frames": summary.displayed,
        "display_fps": stats.display_fps,
        "model_ms": stats.model_ms,
        "engine_ms": list(stats.engine_ms),
        "display_vs_model_rate": stats.display_fps * stats.model_ms / 1000.0,
        "source_fps": fps,
        # what the display can reach: the models' summed rate, or the source's if that is slower
        "display_vs_bound": stats.display_fps / min(fps or float("inf"), 1000.0 / stats.model_ms),
        "latency_ms": stats.latency_ms,
        "latency_vs_model": stats.latency_ms / stats.model_ms,
        "stage_ms": stage,
        "stage_cpu_ms": cpu,
        "pre_post_draw_ms": stage["resize"] + stage["cam"] + stage["overlay"],
        "pre_post_draw_cpu_ms": cpu["resize"] + cpu["cam"] + cpu["overlay"],
        "wall_s": seconds,
    }


def batching(model: str, size: int, sources: int, rounds: int) -> dict[str, Any]:
    """`sources` frames in one engine call against one call per frame, in alternation."""
    engine = LocalEngine(model, EngineOptions(providers="cpu"))
    images = np.random.default_rng(0).integers(0, 256, (sources, size, size, 3), dtype=np.uint8)

    def separate() -> None:
        for image in images:
            engine.run(image[None], [[-1]], need_gradients=False)

    ms = alternate({"batched": lambda: engine.run(images, [[-1]], need_gradients=False), "separate": separate}, rounds)
    return {**ms, "sources": sources, "ratio": ms["batched"] / ms["separate"]}


def soak_in_process(models: Sequence[str], n: int, sources: int = 1) -> dict[str, Any]:
    """RSS after a warm-up and after n frames: every model on every source, recording, Grad-CAM++, smoothing."""
    import psutil

    from realtime.outputs.recording import Recorder

    frames = synthetic_frames(30)
    engines = _engines(models)
    process = psutil.Process()
    controls = Controls(Query(method="gradcam++"), Look(smooth=0.5))
    # 120 FPS: faster than the loop can draw, yet a source that waits between frames like a camera;
    # an unpaced Python source would hold the GIL and starve the loop (a harness artefact, not a leak)
    readers = SourceSet([LoopSource(frames, 120.0, f"loop {i}") for i in range(sources)])
    with tempfile.TemporaryDirectory() as tmp, readers, Recorder(Path(tmp) / "soak.avi", Path(tmp)) as recorder:
        Loop(engines, readers, controls, [recorder]).run(min(500, n))  # nothing may grow but the file
        warm = process.memory_info().rss
        start = time.perf_counter()
        summary = Loop(engines, readers, controls, [recorder]).run(n)
        end = process.memory_info().rss
    return {
        "frames": summary.displayed,
        "models": len(engines),
        "sources": sources,
        "seconds": time.perf_counter() - start,
        "rss_start_mb": warm / 2**20,
        "rss_end_mb": end / 2**20,
        "growth_mb": (end - warm) / 2**20,
    }


def camera_rate(model: str, frames: Sequence[np.ndarray], n: int, providers: str = "cpu") -> dict[str, Any]:
    """Every frame of a 30 FPS source displayed while the model runs at its own rate, maps carried by flow."""
    summary, _ = _loop(model, frames, n, 30.0, display="camera", providers=providers)
    stats = summary.stats
    return {
        "frames": summary.displayed,
        "display_fps": stats.display_fps,
        "model_fps": stats.model_fps,
        "flow_warp_ms": stats.stage_ms["flow"],
        "flow_warp_cpu_ms": stats.stage_cpu_ms["flow"],
        "overlay_cpu_ms": stats.stage_cpu_ms["overlay"],
        "dropped": summary.dropped,
    }


def browser_load(model: str, frames: Sequence[np.ndarray], fps: float, seconds: float) -> dict[str, Any]:
    """Loop display rate alone, then with 4 streaming browser clients and 1 that reads nothing."""
    import socket
    import threading
    import urllib.request

    from realtime.outputs.browser.app import ServerThread, make_app
    from realtime.outputs.browser.hub import FrameHub

    engine = LocalEngine(model, EngineOptions(providers="cpu"))
    hub = FrameHub(engine.info.labels, engine.provides)
    server = ServerThread(make_app(hub, max_clients=5), "127.0.0.1", 0).start()
    readers = SourceSet([LoopSource(frames, fps)])
    readers.start()
    loop = Loop(engine, readers, Controls(), [hub])
    runner = threading.Thread(target=loop.run, daemon=True)
    runner.start()
    stop = threading.Event()
    received = [0] * 4

    def client(i: int) -> None:
        with urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) as stream:
            while not stop.is_set():
                received[i] += len(stream.read(65536))

    def rate() -> float:
        start_seq, start = hub.snapshot.sequence, time.perf_counter()
        time.sleep(seconds)
        return (hub.snapshot.sequence - start_seq) / (time.perf_counter() - start)

    try:
        time.sleep(1.0)
        alone = rate()
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: bench\r\n\r\n")
        clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
        for c in clients:
            c.start()
        time.sleep(1.0)
        loaded = rate()
        stop.set()
        stalled.close()
    finally:
        loop.stop_requested = True
        runner.join(timeout=20)
        readers.stop()
        server.stop()
    return {
        "source_fps": fps,
        "alone_fps": alone,
        "loaded_fps": loaded,
        "drop": 1.0 - loaded / alone,
        "client_mb": [r / 2**20 for r in received],
    }
