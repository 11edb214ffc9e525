"""Check the CUDA and TensorRT paths on a GPU machine that has no TensorFlow and no VGG16 weights.

    python scripts/gpu_check.py pack MODELS_DIR PACK_DIR   # here: graphs without their big weights
    python scripts/gpu_check.py check PACK_DIR OUT_DIR     # on the GPU machine

`pack` keeps each graph's structure and, for every large initializer, only its shape, dtype and
value statistics (a VGG16 graph shrinks from 550 MB to under 1 MB). `check` refills them with
seeded random values of the same statistics, then compares the GPU providers with the CPU on the
same graphs, times them, runs the live loops on CUDA, and writes gpu_check.json and gpu_check.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench.live import camera_rate, run_loop, synthetic_frames  # noqa: E402
from scripts.bench.timing import alternate, machine  # noqa: E402

BIG = 64 * 1024  # initializers above this many bytes travel as statistics only


# ----------------------------------------------------------------------------- pack / unpack


def pack(models: Path, out: Path) -> None:
    import onnx
    from onnx import numpy_helper

    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(models.glob("*.onnx")):
        model = onnx.load(str(path))
        stats: dict[str, Any] = {}
        keep = []
        for tensor in model.graph.initializer:
            array = numpy_helper.to_array(tensor)
            if array.nbytes <= BIG:
                keep.append(tensor)
                continue
            wide = array.astype(np.float64)
            stats[tensor.name] = {
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "mean": float(wide.mean()),
                "std": float(wide.std()),
                "min": float(wide.min()),
                "max": float(wide.max()),
            }
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
        onnx.save(model, str(out / path.name))
        (out / f"{path.stem}.json").write_text(json.dumps(stats))
        print(f"packed {path.name}: {len(stats)} initializers as statistics")


def unpack(pack_dir: Path, out: Path, seed: int = 0) -> dict[str, str]:
    """Rebuild every packed graph with random weights of the recorded statistics."""
    import onnx
    from onnx import numpy_helper

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for skeleton in sorted(pack_dir.glob("*.onnx")):
        rng = np.random.default_rng(seed)
        model = onnx.load(str(skeleton))
        for name, s in json.loads((pack_dir / f"{skeleton.stem}.json").read_text()).items():
            dtype = np.dtype(s["dtype"])
            if dtype.kind == "f":
                array = rng.normal(s["mean"], s["std"], s["shape"]).astype(dtype)
            else:
                array = rng.integers(int(s["min"]), int(s["max"]) + 1, s["shape"]).astype(dtype)
            model.graph.initializer.append(numpy_helper.from_array(array, name))
        target = out / skeleton.name
        onnx.save(model, str(target))
        paths[skeleton.stem] = str(target)
    return paths


# ----------------------------------------------------------------------------- checks


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    def loads(name: str) -> bool:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            return False

    smi = nvidia_smi("-L")
    return {
        **machine(),
        "onnxruntime_file": ort.__file__,
        "available_providers": ort.get_available_providers(),
        "device": ort.get_device(),
        "gpus": smi,
        "libnvinfer.so.10": loads("libnvinfer.so.10"),
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", ""),
    }


PROBE = """
import contextlib, io, json, sys
sys.path.insert(0, {root!r})
import onnxruntime as ort
out = {{}}
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    if {plain}:
        s = ort.InferenceSession({model!r}, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        out["provider"] = s.get_providers()[0]
    else:
        from realtime.engine import Engine, EngineOptions
        for chain in ("auto", "tensorrt", "cuda"):
            e = Engine({model!r}, EngineOptions(providers=chain, warmup=1))
            out[chain] = {{"provider": e.provider, "notice": e.notice}}
print(json.dumps(out))
"""


def provider_probe(model: str) -> dict[str, Any]:
    """Fresh processes: does CUDA load without help, and what does the engine pick for each chain?"""
    report = {}
    for label, plain in (("plain onnxruntime session, no preload", True), ("realtime.engine.Engine", False)):
        code = PROBE.format(root=str(ROOT), model=model, plain=plain)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        lines = done.stdout.strip().splitlines()
        report[label] = json.loads(lines[-1]) if done.returncode == 0 and lines else done.stderr[-1500:]
    return report


def compare(cpu: Any, gpu: Any) -> dict[str, float]:
    from realtime.demo.metrics import map_correlation

    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))

    size = gpu.cam.shape[2:]
    maps = list(zip(gpu.cam.reshape(-1, *size), cpu.cam.reshape(-1, *size), strict=True))
    out = {
        "classes_equal": float(np.array_equal(cpu.classes, gpu.classes)),
        "top1_agreement": float(np.mean(cpu.classes[:, 0] == gpu.classes[:, 0])),
        "cam_correlation": float(np.mean([map_correlation(g, c) for g, c in maps])),
        "logits_rel": rel(gpu.logits, cpu.logits),
        "weights_rel": rel(gpu.weights, cpu.weights),
        "cam_max_abs": float(np.abs(gpu.cam - cpu.cam).max()),
    }
    if cpu.gradients is not None and gpu.gradients is not None:
        out["gradients_rel"] = rel(gpu.gradients, cpu.gradients)
    return out


def parity(paths: dict[str, str], images: np.ndarray) -> dict[str, Any]:
    """CPU against CUDA (TF32 on, the default, and off) on the same inputs, top-3 maps."""
    from realtime.engine import Engine, EngineOptions
    from realtime.providers import CUDA

    report: dict[str, Any] = {}
    for name, path in paths.items():
        cpu_engine = Engine(path, EngineOptions(providers="cpu", warmup=0))
        targets = [[-1] * min(3, cpu_engine.info.num_classes)]
        cpu = cpu_engine.run(images, targets)
        gpu_engine = Engine(path, EngineOptions(providers="cuda", warmup=1))
        report[name] = {"provider": gpu_engine.provider, "tf32": compare(cpu, gpu_engine.run(images, targets))}
        if gpu_engine.provider != CUDA:
            continue
        strict = Engine(path, EngineOptions(providers="cuda", tf32=False, warmup=1))  # fp32 matrix units
        report[name]["fp32"] = compare(cpu, strict.run(images, targets))
    return report


def nvidia_smi(*args: str) -> str:
    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, check=False).stdout.strip()
    except FileNotFoundError:
        return "no nvidia-smi"


def gpu_memory_mib() -> float:
    try:
        return float(nvidia_smi("--query-gpu=memory.used", "--format=csv,noheader,nounits").splitlines()[0])
    except (ValueError, IndexError):
        return float("nan")


class ForwardOnly:
    """The forward-only baseline has no Grad-CAM outputs, so no Engine: a bare session, bound the same way."""

    def __init__(self, path: str, options: Any) -> None:
        import onnxruntime as ort

        from realtime.providers import cpu_session_options, provider_chain

        self.session = ort.InferenceSession(path, cpu_session_options(), providers=provider_chain(options))
        self.provider = self.session.get_providers()[0]
        self.names = [o.name for o in self.session.get_outputs()]
        for _ in range(options.warmup):
            self.run(np.zeros((1, 224, 224, 3), np.uint8), [[-1]])

    def run(self, images: np.ndarray, targets: Any, need_gradients: bool = False) -> list[Any]:
        binding = self.session.io_binding()
        binding.bind_cpu_input("image", images)
        binding.bind_cpu_input("targets", np.broadcast_to(np.asarray(targets, np.int64), (len(images), 1)).copy())
        for name in self.names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return list(binding.get_outputs())


def speed(paths: dict[str, str], rounds: int) -> dict[str, Any]:
    """ms per call through the engine (IO binding, gradients left on the device), batch 1 and 8."""
    from realtime.engine import Engine, EngineOptions

    report: dict[str, Any] = {}
    rng = np.random.default_rng(1)
    for label, options in (
        ("cpu", EngineOptions(providers="cpu", warmup=2)),
        ("cuda", EngineOptions(providers="cuda", warmup=5)),
        ("cuda-no-tf32", EngineOptions(providers="cuda", tf32=False, warmup=5)),
        ("tensorrt", EngineOptions(providers="tensorrt", warmup=5)),
        ("tensorrt-fp16", EngineOptions(providers="tensorrt", fp16=True, warmup=5)),
    ):
        before = gpu_memory_mib()
        engines: dict[str, Any] = {
            name: (ForwardOnly(path, options) if name == "none" else Engine(path, options))
            for name, path in paths.items()
        }
        report[label] = {
            "providers": {name: e.provider for name, e in engines.items()},
            "gpu_memory_mib": gpu_memory_mib() - before,
        }
        if label.startswith("tensorrt") and all(e.provider != "TensorrtExecutionProvider" for e in engines.values()):
            report[label]["skipped"] = (
                "no working TensorRT: the chain fell back to " + next(iter(engines.values())).provider
            )
            continue
        for batch in (1, 8) if label != "cpu" else (1,):
            image = rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
            runs = {n: (lambda e=e, i=image: e.run(i, [[-1]], need_gradients=False)) for n, e in engines.items()}
            ms = alternate(runs, rounds if label != "cpu" else max(5, rounds // 10), warmup=3)
            base = ms.get("none", 1.0)
            report[label][f"batch{batch}"] = {n: {"ms": v, "ratio": v / base} for n, v in ms.items()}
        del engines
    return report


def live(model: str, providers: str) -> dict[str, Any]:
    """The live loops on a 640x480 source: model-rate display at 200 FPS in, camera-rate at 30 FPS in."""
    frames = synthetic_frames(60)
    return {
        "model_rate_200fps_source": run_loop(model, frames, 600, 200.0, providers=providers),
        "camera_rate_30fps_source": camera_rate(model, frames, 240, providers=providers),
    }


def markdown(r: dict[str, Any]) -> str:
    env = r["environment"]
    lines = [
        f"# GPU check, {env['date']}",
        "",
        f"- GPUs: {env['gpus']}",
        f"- onnxruntime {env['onnxruntime']} ({env['device']}), providers {env['available_providers']}",
        f"- TensorRT library (libnvinfer.so.10) loadable: {env['libnvinfer.so.10']}",
        f"- CPU: {env['cpu']}, {env['cores']} cores",
        "",
        "## Provider selection (fresh processes)",
        "```",
        json.dumps(r["probe"], indent=1),
        "```",
        "",
        "## CPU against CUDA on the same graphs (random weights), top-3 maps",
        "| graph | top-1 agree | TF32 logits rel | TF32 cam max abs | TF32 cam corr | no-TF32 logits rel "
        "| no-TF32 cam max abs | no-TF32 cam corr |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in r["parity"].items():
        t, f = p["tf32"], p.get("fp32", {})
        nan = float("nan")
        lines.append(
            f"| {name} | {t['top1_agreement']:.2f} | {t['logits_rel']:.1e} | {t['cam_max_abs']:.1e} "
            f"| {t['cam_correlation']:.5f} | {f.get('logits_rel', nan):.1e} | {f.get('cam_max_abs', nan):.1e} "
            f"| {f.get('cam_correlation', nan):.5f} |"
        )
    lines += ["", "## ms per call (engine, IO binding), ratio to forward-only", "```"]
    for label, block in r["speed"].items():
        lines.append(f"{label}: providers {block['providers']}, +{block['gpu_memory_mib']:.0f} MiB on the GPU")
        if "skipped" in block:
            lines.append(f"  {block['skipped']}")
        for key, rows in block.items():
            if key.startswith("batch"):
                cells = ", ".join(f"{n} {v['ms']:.2f} ms ({v['ratio']:.2f}x)" for n, v in rows.items())
                lines.append(f"  {key}: {cells}")
    lines += ["```", "", "## Live loops on CUDA (VGG16 pooled, 640x480)", "```"]
    for name, res in r["live"].items():
        lines.append(f"{name}: {json.dumps(res, default=float)}")
    lines.append("```")
    return "\n".join(lines) + "\n"


def check(pack_dir: Path, out: Path, rounds: int) -> int:
    from realtime.demo.models import demo_model_paths
    from realtime.demo.scenes import dataset

    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    failures = 0

    def section(name: str, fn: Any) -> Any:
        """Run one part; a failure is recorded with its traceback and the next part still runs."""
        nonlocal failures
        start = time.perf_counter()
        try:
            report[name] = fn()
        except Exception:  # a diagnostic run: keep going, report what broke
            import traceback

            failures += 1
            report[name] = {"error": traceback.format_exc()[-3000:]}
        print(f"== {name} ({time.perf_counter() - start:.0f} s)\n{json.dumps(report[name], indent=1, default=float)}")
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=float))
        return report[name]

    demo = str(demo_model_paths()["fair"])
    trained = {path.stem: str(path) for path in sorted((pack_dir / "real").glob("*.onnx"))}  # carried whole
    section("environment", environment)
    section("probe", lambda: provider_probe(demo))
    paths = section("models", lambda: unpack(pack_dir, Path("/tmp/gpu_check_models")))
    demo_images = np.stack([s.image for s in dataset(8, seed=3, biased=False)])
    vgg_images = np.random.default_rng(2).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    with_maps = {name: path for name, path in paths.items() if name != "none"}
    section(
        "parity",
        lambda: {**parity({"demo fair": demo, **trained}, demo_images), **parity(with_maps, vgg_images)},
    )
    section("speed", lambda: speed(paths, rounds))
    section("live", lambda: live(paths["pooled"], "cuda"))
    try:
        (out / "gpu_check.md").write_text(markdown(report))
        print(markdown(report))
    except (KeyError, TypeError) as exc:
        print(f"markdown skipped: a section failed ({exc!r})")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("models", type=Path)
    p.add_argument("pack_dir", type=Path)
    c = sub.add_parser("check")
    c.add_argument("pack_dir", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.models, args.pack_dir)
        return 0
    return check(args.pack_dir, args.out, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
