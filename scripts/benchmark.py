"""Every speed and memory claim, measured side by side in one run, as ratios of medians.

    python scripts/benchmark.py                     # VGG16 (random weights), about 6 minutes on 2 cores
    python scripts/benchmark.py --quick             # the small demo architecture, under 2 minutes
    python scripts/benchmark.py --json out.json --markdown out.md

Timings alternate between the graphs compared (a, b, c, a, b, c, ...) so a noisy neighbour slows all
of them alike; every figure is a median. Memory is measured in fresh processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # scripts.* when run as `python scripts/benchmark.py`

from realtime.progress import Progress  # noqa: E402

GRAPHS = ("none", "pooled", "full")


# ----------------------------------------------------------------------------- helpers


def median_of(meter: Any) -> float:
    """Median of a DurationMeter's window (ms): robust to the first frames' cold caches."""
    values = meter.values_ms
    return float(np.median(values)) if values else 0.0


def median_ms(samples: Sequence[float]) -> float:
    return float(np.median(np.asarray(samples)) * 1000.0)


def alternate(runs: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median ms of each callable, timed in alternation."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds + warmup):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: median_ms(values) for name, values in times.items()}


def python_child(code: str, timeout: float = 600) -> dict[str, Any]:
    """Run code in a fresh interpreter; it prints one JSON line last."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def machine() -> dict[str, Any]:
    import cv2
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }


# ----------------------------------------------------------------------------- the graphs


@dataclass(frozen=True)
class Subject:
    """What is benchmarked: VGG16 at full size, or the small demo architecture for --quick."""

    name: str
    input_size: int
    export_args: tuple[str, ...]


VGG16 = Subject("vgg16", 224, ("--weights", "random", "--seed", "0"))


def small_subject(folder: Path) -> Subject:
    from scripts.train_demo_models import LAYER, build_model

    path = folder / "small.keras"
    build_model(0).save(path)
    return Subject("demo-architecture", 224, ("--model", str(path), "--layer", LAYER, "--preprocess", "tf"))


EXPORT_CHILD = """
import json, resource, runpy, sys, time
sys.argv = ["gradcam-export", *{args!r}]
start = time.perf_counter()
try:
    runpy.run_module("realtime.export.cli", run_name="__main__")
except SystemExit as exc:
    if exc.code:
        raise
print(json.dumps({{"seconds": time.perf_counter() - start,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def export_all(subject: Subject, folder: Path) -> dict[str, Any]:
    """Export the forward-only, pooled and full graphs; time and peak RSS of each, in its own process."""
    report = {}
    for gradients in GRAPHS:
        out = folder / f"{subject.name}_{gradients}.onnx"
        args = (*subject.export_args, "--gradients", gradients, "--output", str(out), "--quiet")
        report[gradients] = {"path": str(out), **python_child(EXPORT_CHILD.format(args=args))}
    return report


INT8_VARIANTS = {  # name: (graph, --int8-scope); pooled_forward is the alternative the default is chosen over
    "pooled": ("pooled", "all"),
    "full": ("full", "all"),
    "pooled_forward": ("pooled", "forward"),
}


def export_int8(subject: Subject, folder: Path) -> dict[str, Any]:
    """The pooled and full graphs quantized to int8 (demo calibration), timed and measured in their own process."""
    report = {}
    for name, (gradients, scope) in INT8_VARIANTS.items():
        out = folder / f"{subject.name}_{name}_int8.onnx"
        args = (*subject.export_args, "--gradients", gradients, "--int8", "--int8-scope", scope)
        args = (*args, "--output", str(out), "--quiet")
        report[name] = {"path": str(out), "scope": scope, **python_child(EXPORT_CHILD.format(args=args))}
    return report


def int8_cost(fp32: dict[str, str], int8: dict[str, str], size: int, rounds: int) -> dict[str, Any]:
    """int8 against fp32, batch 1, in alternation, each with the engine's own session settings."""
    from realtime.engine import Engine, EngineOptions

    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    engines = {
        f"{g}_{p}": Engine(path, EngineOptions(providers="cpu", warmup=1))
        for p, paths in (("fp32", fp32), ("int8", int8))
        for g, path in paths.items()
    }
    ms = alternate({n: (lambda e=e: e.run(image, [[-1]], need_gradients=False)) for n, e in engines.items()}, rounds)
    speedups = {
        f"{name}_speedup": ms[f"{graph}_fp32"] / ms[f"{name}_int8"] for name, (graph, _) in INT8_VARIANTS.items()
    }
    return {**{n: {"ms": v} for n, v in ms.items()}, **speedups}


def sessions(paths: dict[str, str]) -> dict[str, Any]:
    import onnxruntime as ort

    from realtime.engine import cpu_session_options

    return {
        name: ort.InferenceSession(path, cpu_session_options(), providers=["CPUExecutionProvider"])
        for name, path in paths.items()
    }


def model_cost(paths: dict[str, str], size: int, batches: Sequence[int], ks: Sequence[int], rounds: int) -> dict:
    """ms per call of each graph and its ratio to the forward-only graph."""
    sess = sessions(paths)
    rng = np.random.default_rng(0)
    report: dict[str, Any] = {}
    for batch in batches:
        image = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        targets = np.full((batch, 1), -1, np.int64)
        feeds = {"image": image, "targets": targets}
        ms = alternate({n: (lambda s=s, f=feeds: s.run(None, f)) for n, s in sess.items()}, rounds)
        report[f"batch{batch}"] = {n: {"ms": v, "ratio": v / ms["none"]} for n, v in ms.items()}
    image = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    scale = {}
    classes = int(sess["none"].get_outputs()[0].shape[-1])
    for k in (k for k in ks if k <= classes):
        feeds = {"image": image, "targets": np.full((1, k), -1, np.int64)}
        runs = {n: (lambda s=s, f=feeds: s.run(None, f)) for n, s in sess.items()}
        scale[f"K={k}"] = alternate(runs, max(3, rounds // 2))
    report["targets"] = scale
    return report


def _product_graph(weights: Sequence[tuple[int, int]], rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    """An ONNX graph of Gemm(g, W, transB=1) products with random weights of these shapes, and its feeds."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inputs, outputs, inits, feeds = [], [], [], [], {}
    for i, (rows, cols) in enumerate(weights):  # y = g @ W.T, as the backward writes it
        nodes.append(helper.make_node("Gemm", [f"g{i}", f"w{i}"], [f"y{i}"], transB=1))
        inputs.append(helper.make_tensor_value_info(f"g{i}", TensorProto.FLOAT, [1, cols]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, rows]))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.01, (rows, cols)).astype(np.float32), f"w{i}"))
        feeds[f"g{i}"] = rng.normal(0, 1, (1, cols)).astype(np.float32)
    model = helper.make_model(
        helper.make_graph(nodes, "products", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 9
    return model, feeds


def backward_floor(paths: dict[str, str], size: int, rounds: int) -> dict[str, Any]:
    """What an exact backward cannot avoid here: one more read of every weight it multiplies by.

    Each graph's backward Dense products (its Gemm nodes) are rebuilt alone with weights of the
    same shapes and timed in alternation with the forward-only graph. Those reads are memory-bound:
    unless the weights are still in cache (fc2's 64 MB can be, on a large L3; fc1's 411 MB was not,
    even read backwards right after the forward), no exact fp32 backward is cheaper than
    1 + floor / forward.
    """
    import onnx
    import onnxruntime as ort

    from realtime.engine import cpu_session_options

    rng = np.random.default_rng(0)
    shapes: dict[str, list[tuple[int, int]]] = {}
    runs: dict[str, Callable[[], object]] = {}
    for graph in ("pooled", "full"):
        model = onnx.load(paths[graph])
        dims = {i.name: (int(i.dims[0]), int(i.dims[1])) for i in model.graph.initializer if len(i.dims) == 2}
        # the backward's Dense products: Gemm(W, g^T) with the weight first (a forward Gemm has it second)
        shapes[graph] = [dims[n.input[0]] for n in model.graph.node if n.op_type == "Gemm" and n.input[0] in dims]
        del model
        product, feeds = _product_graph(shapes[graph], rng)
        session = ort.InferenceSession(
            product.SerializeToString(), cpu_session_options(), providers=["CPUExecutionProvider"]
        )
        runs[graph] = lambda s=session, f=feeds: s.run(None, f)
    forward = sessions({"none": paths["none"]})["none"]
    image = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    forward_feeds = {"image": image, "targets": np.full((1, 1), -1, np.int64)}
    ms = alternate({"forward": lambda: forward.run(None, forward_feeds), **runs}, rounds)
    report: dict[str, Any] = {"forward_ms": ms["forward"]}
    for graph, weights in shapes.items():
        megabytes = sum(r * c * 4 for r, c in weights) / 2**20
        report[graph] = {
            "weights": [list(w) for w in weights],
            "weight_mb": megabytes,
            "floor_ms": ms[graph],
            "gb_per_s": megabytes / 1024 / (ms[graph] / 1000),
            "ratio_floor": 1.0 + ms[graph] / ms["forward"],
        }
    return report


RSS_CHILD = """
import json, numpy as np, onnxruntime as ort, psutil
from realtime.engine import cpu_session_options
before = psutil.Process().memory_info().rss
s = ort.InferenceSession({path!r}, cpu_session_options(), providers=["CPUExecutionProvider"])
s.run(None, {{"image": np.zeros((1, {size}, {size}, 3), np.uint8), "targets": np.full((1, 1), -1, np.int64)}})
print(json.dumps({{"session_mb": (psutil.Process().memory_info().rss - before) / 2**20,
                   "process_mb": psutil.Process().memory_info().rss / 2**20}}))
"""


def session_rss(paths: dict[str, str], size: int) -> dict[str, Any]:
    report = {n: python_child(RSS_CHILD.format(path=p, size=size)) for n, p in paths.items()}
    for n in report:
        report[n]["ratio"] = report[n]["process_mb"] / report["none"]["process_mb"]
    return report


def seed_method(subject: Subject, full_path: str, rounds: int) -> dict[str, Any]:
    """The blog post's way: Keras + GradientTape per frame, same weights and image, against our graph."""
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    from realtime.engine import cpu_session_options
    from realtime.export.keras_reference import reference_gradcam

    if subject.name == "vgg16":
        keras.utils.set_random_seed(0)
        model = keras.applications.VGG16(weights=None, classifier_activation=None)
        layer, prep = "block5_conv3", "caffe"
    else:
        model = keras.models.load_model(subject.export_args[1], compile=False)
        layer, prep = subject.export_args[3], "tf"
    image = np.random.default_rng(1).integers(0, 256, (1, subject.input_size, subject.input_size, 3), dtype=np.uint8)
    targets = np.array([[-1]], np.int64)
    body = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])

    def tape_gradcam() -> np.ndarray:
        """The seed, per frame: predict to pick the class, then activations and the gradient of its logit."""
        from realtime.export.keras_reference import PREPROCESSORS

        x = PREPROCESSORS[prep](tf.cast(tf.constant(image), tf.float32))
        class_idx = int(tf.argmax(model(x, training=False)[0]))  # the seed's model.predict(x)
        with tf.GradientTape() as tape:
            a, logits = body(x, training=False)
            score = logits[:, class_idx]
        grads = tape.gradient(score, a)
        weights = tf.reduce_mean(grads, axis=(1, 2))
        return tf.nn.relu(tf.einsum("nhwc,nc->nhw", a, weights)).numpy()

    session = ort.InferenceSession(full_path, cpu_session_options(), providers=["CPUExecutionProvider"])
    feeds = {"image": image, "targets": targets}
    ms = alternate({"tape": tape_gradcam, "onnx_full": lambda: session.run(None, feeds)}, rounds)
    ours = session.run(["cam"], feeds)[0][0, 0]
    ref = reference_gradcam(model, layer, prep, image, targets)["cam"][0, 0]
    seed_map = tape_gradcam()[0]
    seed_map = seed_map / max(float(seed_map.max()), 1e-12)
    return {
        "tape_ms": ms["tape"],
        "onnx_full_ms": ms["onnx_full"],
        "speedup": ms["tape"] / ms["onnx_full"],
        "max_abs_map_diff_vs_seed": float(np.abs(ours - seed_map).max()),
        "max_abs_map_diff_vs_reference": float(np.abs(ours - ref).max()),
    }


# ----------------------------------------------------------------------------- the live loop


class LoopSource:
    """A live source replaying frames forever at `fps` (0: as fast as asked), like a camera."""

    live = True
    name = "loop"

    def __init__(self, frames: Sequence[np.ndarray], fps: float = 30.0) -> None:
        self.frames, self.fps = list(frames), fps
        self.index, self.start = 0, 0.0

    def open(self) -> None:
        self.index, self.start = 0, time.perf_counter()

    def read(self) -> np.ndarray:
        if self.fps > 0:
            wait = self.start + self.index / self.fps - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        frame = self.frames[self.index % len(self.frames)]
        self.index += 1
        return frame

    def close(self) -> None:
        pass


def synthetic_frames(n: int, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    from realtime.demo.live import DemoScene, Timeline

    scene = DemoScene(Timeline(size=size))
    return [scene.frame(i * 7).image for i in range(n)]


def run_loop(
    model: str, frames: Sequence[np.ndarray], n: int, fps: float, method: str = "gradcam", providers: str = "cpu"
) -> dict[str, Any]:
    from realtime.capture import LatestFrameReader
    from realtime.engine import Engine, EngineOptions
    from realtime.pipeline import Controls, LiveLoop

    engine = Engine(model, EngineOptions(providers=providers))
    with LatestFrameReader(LoopSource(frames, fps)) as reader:
        loop = LiveLoop(engine, reader, Controls(method=method))
        start = time.perf_counter()
        summary = loop.run(n)
        seconds = time.perf_counter() - start
    stats = summary.stats
    model_ms = float(np.median(loop.model_time.values_ms))
    stage_ms = {name: median_of(meter) for name, meter in loop.stages.items()}
    cpu = {name: median_of(meter) for name, meter in loop.stage_cpu.items()}
    drawing = stage_ms["cam"] + stage_ms["overlay"]
    return {
        "frames": summary.displayed,
        "display_fps": stats.display_fps,
        "model_ms": model_ms,
        "display_vs_model_rate": stats.display_fps * model_ms / 1000.0,
        "latency_ms": float(np.median(loop.latency.values_ms)),
        "latency_vs_model": float(np.median(loop.latency.values_ms)) / model_ms,
        "stage_ms": stage_ms,
        "stage_cpu_ms": cpu,
        "pre_post_draw_ms": stage_ms["resize"] + drawing,
        "pre_post_draw_cpu_ms": cpu["resize"] + cpu["cam"] + cpu["overlay"],
        "wall_s": seconds,
    }


SOAK_CHILD = """
import json, psutil, sys
sys.path.insert(0, {root!r})
from scripts.benchmark import soak_in_process
print(json.dumps(soak_in_process({model!r}, {frames})))
"""


def soak_in_process(model: str, n: int) -> dict[str, Any]:
    """RSS after a warm-up and after n frames of the loop on a looping 120 FPS source."""
    import psutil

    from realtime.capture import LatestFrameReader
    from realtime.engine import Engine, EngineOptions
    from realtime.pipeline import Controls, LiveLoop
    from realtime.sinks import VideoRecorder

    frames = synthetic_frames(30)
    engine = Engine(model, EngineOptions(providers="cpu"))
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        recorder = VideoRecorder(Path(tmp) / "soak.avi")  # nothing may grow but the file
        # 120 FPS: faster than the loop can draw, yet a source that waits between frames like a camera;
        # an unpaced Python source would hold the GIL and starve the loop (a harness artefact, not a leak)
        with LatestFrameReader(LoopSource(frames, fps=120.0)) as reader:
            LiveLoop(engine, reader, Controls(smooth=0.5), sinks=[recorder]).run(min(500, n))
            warm = process.memory_info().rss
            start = time.perf_counter()
            summary = LiveLoop(engine, reader, Controls(smooth=0.5, method="gradcam++"), sinks=[recorder]).run(n)
            end = process.memory_info().rss
        recorder.close()
    return {
        "frames": summary.displayed,
        "seconds": time.perf_counter() - start,
        "rss_start_mb": warm / 2**20,
        "rss_end_mb": end / 2**20,
        "growth_mb": (end - warm) / 2**20,
    }


def browser_load(model: str, frames: Sequence[np.ndarray], fps: float, seconds: float) -> dict[str, Any]:
    """Loop display rate alone, then with 4 streaming browser clients and 1 that reads nothing."""
    import socket
    import threading
    import urllib.request

    from realtime.capture import LatestFrameReader
    from realtime.engine import Engine, EngineOptions
    from realtime.pipeline import Controls, LiveLoop
    from realtime.serve.app import ServerThread, make_app
    from realtime.serve.hub import FrameHub

    engine = Engine(model, EngineOptions(providers="cpu"))
    hub = FrameHub(engine.info.num_classes, engine.has_gradients)
    server = ServerThread(make_app(hub, max_clients=5), "127.0.0.1", 0).start()
    reader = LatestFrameReader(LoopSource(frames, fps))
    reader.start()
    loop = LiveLoop(engine, reader, Controls(), on_frame=hub.publish_report, poll_controls=hub.apply_pending)
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
        reader.stop()
        server.stop()
    return {
        "source_fps": fps,
        "alone_fps": alone,
        "loaded_fps": loaded,
        "drop": 1.0 - loaded / alone,
        "client_mb": [r / 2**20 for r in received],
    }


def camera_rate(model: str, frames: Sequence[np.ndarray], n: int, providers: str = "cpu") -> dict[str, Any]:
    """Every frame of a 30 FPS source displayed while the fp32 model runs at its own rate, maps carried by flow."""
    from realtime.camera_loop import CameraRateLoop
    from realtime.capture import LatestFrameReader
    from realtime.engine import Engine, EngineOptions
    from realtime.pipeline import Controls

    engine = Engine(model, EngineOptions(providers=providers))
    with LatestFrameReader(LoopSource(frames, 30.0)) as reader:
        loop = CameraRateLoop(engine, reader, Controls())
        summary = loop.run(n)
    stats = summary.stats
    return {
        "frames": summary.displayed,
        "display_fps": stats.display_fps,
        "model_fps": stats.model_fps,
        "flow_warp_ms": median_of(loop.stages["flow"]),
        "flow_warp_cpu_ms": median_of(loop.stage_cpu["flow"]),
        "overlay_cpu_ms": median_of(loop.stage_cpu["overlay"]),
        "dropped": summary.dropped,
    }


TRACKING_CLIPS = {"walk": 150, "run": 30}  # frames an animal takes to cross: the demo's 5 s, and 1 s


def tracking(model_rates: Sequence[int]) -> dict[str, Any]:
    """Map centroid against animal centroid on the demo between model updates, stale against warped.

    Two clips: the demo as it plays (animals walk across in 5 s: 54-105 px/s at 640x480) and the
    same scenes with animals running across in 1 s (270-520 px/s).
    """
    from realtime.demo.live import DemoScene, Timeline
    from realtime.demo.models import demo_model_paths
    from realtime.demo.tracking import track
    from realtime.engine import Engine, EngineOptions

    engine = Engine(demo_model_paths()["fair"], EngineOptions(providers="cpu"))
    report: dict[str, Any] = {}
    for clip, crossing in TRACKING_CLIPS.items():
        scene = DemoScene(Timeline(crossing_frames=crossing))
        starts, length = range(0, 4 * crossing, max(crossing, 120)), max(crossing, 120)
        for rate in model_rates:
            every = round(30 / rate)
            runs = [track(engine, scene, start, length, every) for start in starts]
            stale, warped = np.mean([r.stale_px for r in runs]), np.mean([r.warped_px for r in runs])
            stale_t = np.mean([r.stale_tracking_px for r in runs])
            warped_t = np.mean([r.warped_tracking_px for r in runs])
            report[f"{clip} {rate} FPS"] = {
                "frames": int(sum(r.frames for r in runs)),
                "raw_stale_px": float(stale),
                "raw_warped_px": float(warped),
                "raw_ratio": float(warped / stale),
                "tracking_stale_px": float(stale_t),
                "tracking_warped_px": float(warped_t),
                "tracking_ratio": float(warped_t / stale_t),
            }
    static = track(engine, DemoScene(), 40, 60, 6, static=True)
    report["static"] = {"raw_stale_px": static.stale_px, "raw_warped_px": static.warped_px}
    return report


def drawing_scale(sizes: Sequence[tuple[int, int]], rounds: int) -> dict[str, Any]:
    """Per-frame cost outside the model (resize in, CAM normalise, colormap+blend, HUD) by frame size."""
    from realtime import cam, overlay
    from realtime.frames import fit

    rng = np.random.default_rng(0)
    raw = rng.random((1, 14, 14)).astype(np.float32)
    hud = overlay.Hud("tabby", 0.61, "gradcam", [("tabby", 0.61), ("lynx", 0.2)], 7.0, 140.0, 150.0)
    report = {}
    for width, height in sizes:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        ms = alternate(
            {
                "resize": lambda f=frame: fit(f, (224, 224)),
                "cam": lambda: cam.normalise(raw),
                "blend": lambda f=frame: overlay.blend(f, raw[0]),
                "hud": lambda f=frame: overlay.draw_hud(f, hud),
            },
            rounds,
        )
        report[f"{width}x{height}"] = {**ms, "total": sum(ms.values())}
    return report


def gpu_model_cost(paths: dict[str, str], size: int, rounds: int) -> dict[str, Any]:
    """The batch-1 table on the GPU providers: IO binding, fp32 and TensorRT fp16. Runs only where a GPU works."""
    import onnxruntime as ort

    from realtime.engine import CPU, CUDA, TRT, EngineOptions, provider_options

    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    targets = np.full((1, 1), -1, np.int64)
    report: dict[str, Any] = {}
    for label, chain, fp16 in (
        ("cuda", (CUDA,), False),
        ("tensorrt", (TRT, CUDA), False),
        ("tensorrt-fp16", (TRT, CUDA), True),
    ):
        options = EngineOptions(fp16=fp16)
        providers = [(p, provider_options(p, options)) for p in chain] + [CPU]
        runs = {}
        for name, path in paths.items():
            session = ort.InferenceSession(path, providers=providers)
            binding = session.io_binding()
            binding.bind_cpu_input("image", image)
            binding.bind_cpu_input("targets", targets)
            for out in session.get_outputs():  # only the small outputs come back to the host
                binding.bind_output(out.name, "cuda" if out.name in ("gradients", "activations") else "cpu")
            runs[name] = lambda s=session, b=binding: s.run_with_iobinding(b)
            report.setdefault(label, {})[f"{name}_provider"] = session.get_providers()[0]
        ms = alternate(runs, rounds, warmup=5)
        report[label].update({n: {"ms": v, "ratio": v / ms["none"]} for n, v in ms.items()})
    return report


def gpu_available() -> str | None:
    from realtime.demo.models import demo_model_paths
    from realtime.engine import working_gpu_provider

    return working_gpu_provider(demo_model_paths()["fair"])


# ----------------------------------------------------------------------------- report


def goal(value: float, limit: float, below: bool = True) -> str:
    ok = value <= limit if below else value >= limit
    return f"{'met' if ok else 'MISSED'} ({value:.3f} {'<=' if below else '>='} {limit})"


def markdown(r: dict[str, Any]) -> str:
    m, lines = r["machine"], []
    lines.append(
        f"Run: {m['date']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, onnxruntime "
        f"{m['onnxruntime']}, OpenCV {m['opencv']}, numpy {m['numpy']}; subject: {r['subject']}, CPU provider."
    )
    lines += [
        "",
        "| graph | batch 1 ms | ratio | batch 4 ms | ratio | export s | export peak RSS MB "
        "| session RSS MB | RSS ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in GRAPHS:
        b1, b4 = r["model_cost"]["batch1"][g], r["model_cost"]["batch4"][g]
        ex, rss = r["export"][g], r["session_rss"][g]
        lines.append(
            f"| {g} | {b1['ms']:.1f} | {b1['ratio']:.3f} | {b4['ms']:.1f} | {b4['ratio']:.3f} | "
            f"{ex['seconds']:.1f} | {ex['peak_rss_mb']:.0f} | {rss['process_mb']:.0f} | {rss['ratio']:.3f} |"
        )
    lines += [
        "",
        "Any ONNX classifier (torchvision, random weights, `gradcam-export --onnx`), batch 1:",
        "",
        "| model | graph | ms | ratio to forward-only | export s | export peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in r["onnx_models"].items():
        for g in GRAPHS:
            c = row[g]
            lines.append(
                f"| {name} | {g} | {c['ms']:.1f} | {c['ratio']:.3f} | {c['seconds']:.1f} | {c['peak_rss_mb']:.0f} |"
            )
    f = r["backward_floor"]
    lines.append("")
    for graph in ("pooled", "full"):
        b = f[graph]
        lines.append(
            f"Floor of an exact `{graph}` backward: re-reading the weights it multiplies by "
            f"({b['weight_mb']:.0f} MB: {', '.join('x'.join(map(str, w)) for w in b['weights'])}) alone took "
            f"{b['floor_ms']:.1f} ms ({b['gb_per_s']:.1f} GB/s) beside {f['forward_ms']:.1f} ms for the forward-only "
            f"graph: {b['ratio_floor']:.3f}x forward-only, unless those weights are still in cache."
        )
    t = r["model_cost"]["targets"]
    lines += [
        "",
        "Targets per pass (batch 1, ms): "
        + "; ".join(f"{k}: " + ", ".join(f"{g} {v[g]:.1f}" for g in GRAPHS) for k, v in t.items()),
    ]
    s = r["seed"]
    lines += [
        "",
        f"Seed's method (Keras GradientTape, eager, per frame): {s['tape_ms']:.1f} ms against "
        f"{s['onnx_full_ms']:.1f} ms for the full graph: {s['speedup']:.1f}x. Maps: max abs difference "
        f"{s['max_abs_map_diff_vs_seed']:.2e} to the seed's map, {s['max_abs_map_diff_vs_reference']:.2e} "
        "to the GradientTape reference.",
    ]
    p = r["pipeline"]
    st = p["stage_ms"]
    lines += [
        "",
        f"Live loop ({p['frames']} frames of a 640x480 source at 30 FPS, full graph, Grad-CAM): display "
        f"{p['display_fps']:.2f} FPS, model {p['model_ms']:.1f} ms, display x model time "
        f"{p['display_vs_model_rate']:.3f}, latency {p['latency_ms']:.1f} ms = {p['latency_vs_model']:.2f}x "
        f"model; stages (ms): resize {st['resize']:.2f}, inference {st['inference']:.1f}, CAM "
        f"{st['cam']:.2f}, colormap+blend+HUD {st['overlay']:.2f}, sink {st['sink']:.2f}; pre+post+draw "
        f"{p['pre_post_draw_ms']:.2f} ms.",
    ]
    lines.append(
        f"Drawing cost measured as CPU time of the threads doing it (the wall time above includes waiting for "
        f"the cores onnxruntime is using for the next frame): {p['pre_post_draw_cpu_ms']:.2f} ms per frame."
    )
    i8, ie, ip = r["int8"], r["int8_export"], r["int8_pipeline"]
    lines += [
        "",
        "| int8 (demo calibration) | --int8-scope | fp32 ms | int8 ms | speedup | quantize+export s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (graph, scope) in INT8_VARIANTS.items():
        lines.append(
            f"| {graph} | {scope} | {i8[graph + '_fp32']['ms']:.1f} | {i8[name + '_int8']['ms']:.1f} "
            f"| {i8[name + '_speedup']:.2f}x | {ie[name]['seconds']:.1f} | {ie[name]['peak_rss_mb']:.0f} |"
        )
    lines.append(
        f"Live loop on the int8 pooled graph (640x480 source at 30 FPS): {ip['display_fps']:.1f} FPS displayed, "
        f"model {ip['model_ms']:.1f} ms, latency {ip['latency_ms']:.1f} ms."
    )
    cr = r["camera_rate"]
    lines.append(
        f"Camera-rate display ({cr['frames']} frames, 30 FPS 640x480 source, fp32 full graph): displayed "
        f"{cr['display_fps']:.1f} FPS while the model ran at {cr['model_fps']:.1f} FPS; flow + warp "
        f"{cr['flow_warp_ms']:.2f} ms wall, {cr['flow_warp_cpu_ms']:.2f} ms CPU per displayed frame."
    )
    lines += [
        "",
        "| clip, model rate | scored frames | raw distance stale px | warped px | ratio | tracking error stale px "
        "| warped px | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, t in r["tracking"].items():
        if name == "static":
            continue
        lines.append(
            f"| {name} | {t['frames']} | {t['raw_stale_px']:.1f} | {t['raw_warped_px']:.1f} | {t['raw_ratio']:.2f} | "
            f"{t['tracking_stale_px']:.1f} | {t['tracking_warped_px']:.1f} | {t['tracking_ratio']:.2f} |"
        )
    st = r["tracking"]["static"]
    lines.append(f"Static scene: raw distance {st['raw_stale_px']:.1f} px stale, {st['raw_warped_px']:.1f} px warped.")
    so = r["soak"]
    lines += [
        "",
        f"Soak: {so['frames']} frames in {so['seconds']:.0f} s (demo model, looping 120 FPS source, recording, "
        f"Grad-CAM++ with smoothing): RSS {so['rss_start_mb']:.1f} -> {so['rss_end_mb']:.1f} MB, growth "
        f"{so['growth_mb']:.1f} MB.",
    ]
    for name, b in r["browser_load"].items():
        lines.append(
            f"Browser view ({name}): loop {b['alone_fps']:.2f} FPS alone, {b['loaded_fps']:.2f} FPS with 4 streaming "
            f"clients and 1 stalled one: {b['drop'] * 100:+.1f}% drop; clients received "
            f"{', '.join(f'{mb:.1f}' for mb in b['client_mb'])} MB."
        )
    lines += ["", "| frame | resize ms | CAM ms | blend ms | HUD ms | total ms |", "|---|---|---|---|---|---|"]
    for size, v in r["drawing_scale"].items():
        lines.append(
            f"| {size} | {v['resize']:.2f} | {v['cam']:.3f} | {v['blend']:.2f} | {v['hud']:.2f} | {v['total']:.2f} |"
        )
    lines += ["", f"GPU: {r['gpu']}", "", "Goals:"]
    lines += [f"- {k}: {v}" for k, v in r["goals"].items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small model and few rounds: a smoke run")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the markdown report here")
    parser.add_argument("--soak-frames", type=int, help="frames for the soak (default 10000, quick 200)")
    parser.add_argument("--work", type=Path, help="folder for the exported graphs (default: a temp folder)")
    args = parser.parse_args(argv)
    quick = args.quick
    rounds = 3 if quick else 15
    progress = Progress(14)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {"machine": machine(), "quick": quick}
        subject = small_subject(work) if quick else VGG16
        report["subject"] = subject.name
        with progress.step(f"exporting {subject.name}: forward-only, pooled, full"):
            report["export"] = export_all(subject, work)
        paths = {g: report["export"][g]["path"] for g in GRAPHS}
        with progress.step("any ONNX classifier: torchvision exports, Grad-CAM against forward-only (batch 1)"):
            from scripts import bench_onnx

            models = ("mobilenet_v3_large",) if quick else bench_onnx.MODELS
            report["onnx_models"] = bench_onnx.measure(work, rounds, alternate, models)
        with progress.step("model cost, batch 1 and 4, K = 1, 3, 5"):
            report["model_cost"] = model_cost(paths, subject.input_size, (1, 4), (1, 3, 5), rounds)
        with progress.step("the bandwidth floor of an exact full backward"):
            report["backward_floor"] = backward_floor(paths, subject.input_size, rounds)
        with progress.step("session RSS of each graph, in fresh processes"):
            report["session_rss"] = session_rss(paths, subject.input_size)
        with progress.step("the seed's method: Keras GradientTape per frame"):
            report["seed"] = seed_method(subject, paths["full"], max(3, rounds // 3))
        with progress.step("the live loop on a 640x480 source at 30 FPS"):
            report["pipeline"] = run_loop(paths["full"], synthetic_frames(30), 20 if quick else 60, fps=30.0)
        soak_frames = args.soak_frames or (200 if quick else 10_000)
        with progress.step(f"soak: {soak_frames} frames"):
            from realtime.demo.models import demo_model_paths

            model = str(demo_model_paths()["fair"])
            report["soak"] = python_child(SOAK_CHILD.format(root=str(ROOT), model=model, frames=soak_frames), 3600)
        with progress.step("camera-rate display: 30 FPS source, fp32 full graph, maps carried by flow"):
            report["camera_rate"] = camera_rate(paths["full"], synthetic_frames(30), 60 if quick else 300)
        with progress.step("tracking on the demo at model rates of 5, 10 and 15 FPS"):
            report["tracking"] = tracking((5, 10, 15))
        with progress.step("int8: quantizing the pooled and full graphs (demo calibration)"):
            report["int8_export"] = export_int8(subject, work)
        int8_paths = {name: report["int8_export"][name]["path"] for name in INT8_VARIANTS}
        with progress.step("int8 against fp32, batch 1, and the live loop on int8"):
            fp32_paths = {g: paths[g] for g in ("pooled", "full")}
            report["int8"] = int8_cost(fp32_paths, int8_paths, subject.input_size, rounds)
            report["int8_pipeline"] = run_loop(int8_paths["pooled"], synthetic_frames(30), 20 if quick else 120, 30.0)
        with progress.step("browser view: loop rate alone and with 4 streaming + 1 stalled client"):
            frames = synthetic_frames(30)
            seconds = 2.0 if quick else 8.0
            report["browser_load"] = {
                "model_rate": browser_load(paths["pooled"], frames, 30.0, seconds),
                "camera_rate_demo": browser_load(model, frames, 30.0, seconds),
            }
        with progress.step("drawing cost by frame size"):
            sizes = ((320, 240), (640, 480), (1280, 720), (1920, 1080))
            report["drawing_scale"] = drawing_scale(sizes, rounds * 2)
        with progress.step("GPU providers"):
            gpu = gpu_available()
            if gpu is None:
                report["gpu"] = "no working GPU provider here: CUDA/TensorRT rows skipped"
            else:
                report["gpu"] = gpu_model_cost(paths, subject.input_size, rounds)
    cost, rss, pipe = report["model_cost"]["batch1"], report["session_rss"], report["pipeline"]
    onnx_goals = {
        f"{name} {graph} <= 1.03x forward-only (batch 1)": goal(row[graph]["ratio"], 1.03)
        for name, row in report["onnx_models"].items()
        for graph in ("pooled", "full")
    }
    report["goals"] = {
        "pooled <= 1.03x forward-only (batch 1)": goal(cost["pooled"]["ratio"], 1.03)
        + f"; re-reading its backward weights alone: {report['backward_floor']['pooled']['ratio_floor']:.3f}",
        "full <= 1.15x forward-only (batch 1)": goal(cost["full"]["ratio"], 1.15)
        + f"; re-reading its backward weights alone: {report['backward_floor']['full']['ratio_floor']:.3f}",
        "session RSS full <= 1.15x forward-only": goal(rss["full"]["ratio"], 1.15),
        "seed's method >= 5x slower than the full graph": goal(report["seed"]["speedup"], 5.0, below=False),
        "export <= 60 s": goal(max(e["seconds"] for e in report["export"].values()), 60.0),
        "export peak RSS <= 5 GB": goal(max(e["peak_rss_mb"] for e in report["export"].values()) / 1024, 5.0),
        "display rate >= 0.95 x 1/model time": goal(pipe["display_vs_model_rate"], 0.95, below=False),
        "pre+post+drawing <= 3 ms per 640x480 frame (CPU time)": goal(pipe["pre_post_draw_cpu_ms"], 3.0),
        "int8 pooled <= 40 ms per frame": goal(report["int8"]["pooled_int8"]["ms"], 40.0),
        "camera-rate display >= 28 FPS from a 30 FPS source": goal(
            report["camera_rate"]["display_fps"], 28.0, below=False
        ),
        "flow + warp <= 2 ms per displayed frame (CPU time)": goal(report["camera_rate"]["flow_warp_cpu_ms"], 2.0),
        **{
            f"{clip}: tracking error warped <= 0.5x stale at 5 FPS": goal(
                report["tracking"][f"{clip} 5 FPS"]["tracking_ratio"], 0.5
            )
            for clip in TRACKING_CLIPS
        },
        **{
            f"{clip}: raw centroid distance warped <= 0.5x stale at 5 FPS": goal(
                report["tracking"][f"{clip} 5 FPS"]["raw_ratio"], 0.5
            )
            for clip in TRACKING_CLIPS
        },
        "static scene: warped no worse than stale": goal(
            report["tracking"]["static"]["raw_warped_px"], report["tracking"]["static"]["raw_stale_px"] + 0.5
        ),
        "int8 pooled >= 3x faster than fp32 pooled": goal(report["int8"]["pooled_speedup"], 3.0, below=False),
        "gradcam-live on int8 >= 20 FPS end to end": goal(report["int8_pipeline"]["display_fps"], 20.0, below=False),
        "int8 quantization <= 120 s": goal(max(e["seconds"] for e in report["int8_export"].values()), 120.0),
        "int8 quantization peak RSS <= 6 GB": goal(
            max(e["peak_rss_mb"] for e in report["int8_export"].values()) / 1024, 6.0
        ),
        "latency <= 1.5x model time": goal(pipe["latency_vs_model"], 1.5),
        "soak RSS growth < 20 MB": goal(report["soak"]["growth_mb"], 20.0),
        "browser clients cost < 5% of the loop's display rate (model-bound)": goal(
            report["browser_load"]["model_rate"]["drop"], 0.05
        ),
        "browser clients cost < 5% of the loop's display rate (30 FPS demo)": goal(
            report["browser_load"]["camera_rate_demo"]["drop"], 0.05
        ),
    }
    if quick:  # the goals are VGG16's; the small architecture's figures only show the script runs
        report["goals"] = {k: "n/a (--quick measures the small demo architecture)" for k in report["goals"]}
    report["goals"] = {**onnx_goals, **report["goals"]}
    text = markdown(report)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
