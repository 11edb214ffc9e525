"""Beyond one box: the Grad-CAM graph served by a real Triton server on this machine, against in-process.

    python scripts/benchmark.py --triton-only --json docs/benchmarks_triton.json

The server is NVIDIA's tritonserver from the nvidia-pytriton wheel (Python backend only: onnxruntime
runs the graph inside it, on the same CPU as the clients; scripts/triton_server.py). Measured with the
demo's fair model at 224x224:
- the round trip over loopback gRPC, beyond the model's own time (RemoteEngine.run against LocalEngine.run,
  batch 1, in alternation);
- the live loop's display rate through Triton against in-process, on the demo's 30 FPS scene;
- N clients (1, 2, 4, 8), each sending a frame as soon as its answer came: aggregate frames/s and
  latency percentiles, with and without dynamic batching, beside N in-process sessions on N threads.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench.timing import alternate, goal

CLIENTS = (1, 2, 4, 8)
ROUND_TRIP_MS = 3.0  # goal: loopback gRPC beyond the model's own time
LOOP_SHARE = 0.9  # goal: the live loop through Triton against in-process
FRAME = (224, 224, 3)


def _load(make: Any, clients: int, seconds: float) -> dict[str, float]:
    """`clients` threads, each with its own engine from `make()`, calling run() back to back."""
    engines = [make() for _ in range(clients)]
    image = np.random.default_rng(0).integers(0, 256, (1, *FRAME), dtype=np.uint8)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            engines[i].run(image, [[-1]], need_gradients=False)
            latencies[i].append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    every = sorted(ms * 1000.0 for group in latencies for ms in group)
    return {
        "clients": clients,
        "frames_per_s": len(every) / wall,
        "p50_ms": every[len(every) // 2],
        "p95_ms": every[min(len(every) - 1, int(len(every) * 0.95))],
    }


def _display_fps(engine: Any, frames: int) -> float:
    from realtime.live.loop import Loop
    from realtime.outputs.controls import Controls
    from realtime.sources.demo import DemoSource
    from realtime.sources.group import SourceSet

    with SourceSet([DemoSource()]) as readers:
        return float(Loop([engine], readers, Controls(), [], display="model").run(frames).stats.display_fps)


def measure(work: Path, rounds: int) -> dict[str, Any]:
    from realtime.demo.models import demo_model_paths
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions
    from realtime.engines.remote import RemoteEngine
    from realtime.export.triton.repository import TritonOptions, write_repository
    from tests.helpers import triton_server

    graph = demo_model_paths()["fair"]
    repo = work / "triton_repo"
    for name, dynamic in (("batched", True), ("single", False)):
        options = TritonOptions(backend="python", device="cpu", max_batch_size=8, dynamic_batching=dynamic)
        write_repository(graph, repo, name, options)
    server = triton_server.start(repo, work)
    seconds = 1.0 if rounds <= 1 else 3.0
    try:
        local = LocalEngine(graph, EngineOptions(providers="cpu"))
        remote = RemoteEngine(f"grpc://{server.grpc}/batched")
        image = np.random.default_rng(1).integers(0, 256, (1, *FRAME), dtype=np.uint8)
        ms = alternate(
            {
                "in-process": lambda: local.run(image, [[-1]], need_gradients=False),
                "triton grpc": lambda: remote.run(image, [[-1]], need_gradients=False),
            },
            rounds * 20,
        )
        loop_frames = 60 if rounds <= 1 else 240
        loop = {"in-process": _display_fps(local, loop_frames), "triton grpc": _display_fps(remote, loop_frames)}
        load: dict[str, list[dict[str, float]]] = {"in-process": [], "triton, dynamic batching": [],
                                                   "triton, no batching": []}  # fmt: skip
        for clients in CLIENTS:
            local = lambda: LocalEngine(graph, EngineOptions(providers="cpu"))  # noqa: E731
            load["in-process"].append(_load(local, clients, seconds))
            for key, name in (("triton, dynamic batching", "batched"), ("triton, no batching", "single")):
                address = f"grpc://{server.grpc}/{name}"
                load[key].append(_load(lambda address=address: RemoteEngine(address), clients, seconds))
    finally:
        server.stop()
    return {
        "round_trip_ms": ms,
        "overhead_ms": ms["triton grpc"] - ms["in-process"],
        "display_fps": loop,
        "display_share": loop["triton grpc"] / loop["in-process"],
        "load": load,
        "load_seconds": seconds,
    }


def goals(measured: dict[str, Any]) -> dict[str, str]:
    four = {key: next(r for r in rows if r["clients"] == 4) for key, rows in measured["load"].items()}
    return {
        f"loopback gRPC <= {ROUND_TRIP_MS} ms beyond the model": goal(measured["overhead_ms"], ROUND_TRIP_MS),
        f"live loop through Triton >= {LOOP_SHARE}x in-process": goal(measured["display_share"], LOOP_SHARE, False),
        "4 clients, dynamic batching >= 4 in-process sessions (frames/s)": goal(
            four["triton, dynamic batching"]["frames_per_s"] / four["in-process"]["frames_per_s"], 1.0, below=False
        ),
    }


def table(measured: dict[str, Any]) -> list[str]:
    ms = measured["round_trip_ms"]
    rows = [
        f"Batch 1, the fair demo model: in-process {ms['in-process']:.2f} ms, through Triton (gRPC, loopback) "
        f"{ms['triton grpc']:.2f} ms: {measured['overhead_ms']:.2f} ms more.",
        f"Live loop on the demo scene: {measured['display_fps']['in-process']:.1f} FPS in-process, "
        f"{measured['display_fps']['triton grpc']:.1f} FPS through Triton ({measured['display_share']:.2f}x).",
        "",
        f"Clients sending frames back to back for {measured['load_seconds']:.0f} s: frames/s (p50 / p95 ms)",
        "",
        "| clients | " + " | ".join(measured["load"]) + " |",
        "|---|" + "---|" * len(measured["load"]),
    ]
    for i, clients in enumerate(CLIENTS):
        cells = [
            f"{r[i]['frames_per_s']:.0f} ({r[i]['p50_ms']:.1f} / {r[i]['p95_ms']:.1f})"
            for r in measured["load"].values()
        ]
        rows.append(f"| {clients} | " + " | ".join(cells) + " |")
    return rows
