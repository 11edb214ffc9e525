"""The product's GPU paths in one run: CUDA graphs and fp16 copies through gradcam's own LocalEngine.

    python scripts/gpu_check.py OUT_DIR [--models vgg16,resnet50,mobilenet_v3_large] [--providers cuda]

Needs torch and torchvision (seeded random weights; nothing is downloaded) and onnxruntime-gpu.
For each model it exports the forward-only and the pooled graph, each also as an fp16 copy (the one
gradcam-export --fp16 writes; its fidelity against fp32 on 24 demo scenes is reported beside the speed,
not used as a gate), on the CPU. Then, on the provider asked for, it measures:
- ms per frame at batch 1 through `LocalEngine.run`, plain and with `--cuda-graph`, fp32 and fp16, each
  as a ratio to the forward-only graph under the same settings (timed in alternation);
- the live loop's display rate on a 200 FPS source, pooled, with CUDA graphs and without.
It writes gpu_check.json and prints a markdown table for docs/gpu.md. `--providers cpu --models
mobilenet_v3_small --rounds 3` is a dry run of the script itself on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench.timing import alternate, machine  # noqa: E402
from tests.helpers.sources import LoopSource, synthetic_frames  # noqa: E402
from tests.helpers.torch_models import torchvision_onnx  # noqa: E402

GOAL = 1.05  # pooled Grad-CAM against forward-only, batch 1, with CUDA graphs


def export_graphs(name: str, folder: Path) -> dict[str, str]:
    """torchvision `name` (seeded) -> ONNX -> forward-only and pooled graphs, fp32 and fp16."""
    from realtime.export.pipeline import ExportConfig, export

    source = torchvision_onnx(name, folder)
    paths = {}
    for gradients in ("none", "pooled"):
        out = folder / f"{name}_{gradients}.onnx"
        export(ExportConfig(onnx=source, gradients=gradients, output=out, quiet=True))
        paths[gradients] = str(out)
        paths[f"{gradients}_fp16"] = str(_fp16_copy(out))
    return paths


def _fp16_copy(fp32: Path) -> Path:
    """The fp16 copy gradcam-export --fp16 writes, without its fidelity gate: random weights can leave a
    model's logits below fp16's range (MobileNetV3-small's reach 3e-9), and the speed is what is measured
    here; the fidelity is reported beside it."""
    import onnx

    from realtime import contract
    from realtime.export.graph.builder import set_metadata
    from realtime.export.variants import fp16
    from realtime.export.variants.gpu import PRECISION_FP16

    out = fp32.with_name(f"{fp32.stem}_fp16.onnx")
    model = fp16.to_fp16(onnx.load(str(fp32)))
    set_metadata(model, contract.META_PRECISION, PRECISION_FP16)
    onnx.save(model, str(out))
    return out


def fidelity(paths: dict[str, str]) -> dict[str, Any]:
    import onnx

    from realtime.export.variants import fp16
    from realtime.export.variants.gpu import _fidelity

    rounded = fp16.rounded_like_fp16(onnx.load(paths["pooled"]))
    return vars(_fidelity(Path(paths["pooled"]), Path(paths["pooled_fp16"]), rounded, (224, 224)))


def _forward_only(path: str, options: Any, image: np.ndarray) -> Any:
    """A forward-only graph (not a contract graph: no LocalEngine) under the same provider and CUDA-graph settings."""
    import onnxruntime as ort

    from realtime.engines.providers import cpu_session_options, provider_chain
    from realtime.engines.replay import bind, cuda_graph_session

    feeds = {"image": image, "targets": np.full((1, 1), -1, np.int64)}  # forward-only graphs take targets too
    session = ort.InferenceSession(path, cpu_session_options(options.threads), providers=provider_chain(options))
    if options.cuda_graph and options.providers != "cpu":
        names = [o.name for o in session.get_outputs()]
        shapes = dict(zip(names, session.run(names, feeds), strict=True))
        replay = bind(cuda_graph_session(path, options)(1, 1), feeds, "cuda", shapes)
        return lambda: replay.run(feeds, [])
    return lambda: session.run(None, feeds)


def per_frame(paths: dict[str, str], providers: str, rounds: int) -> dict[str, Any]:
    """ms per batch-1 frame, in alternation, with and without CUDA graphs: the Grad-CAM graphs through
    LocalEngine.run, the forward-only ones through the same session settings."""
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions

    image = np.random.default_rng(1).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    runs, notices = {}, set()
    for graph_name, path in paths.items():
        for cuda_graph in (False, True):
            options = EngineOptions(providers=providers, warmup=3, cuda_graph=cuda_graph)
            key = f"{graph_name}{' cuda-graph' if cuda_graph else ''}"
            if graph_name.startswith("none"):
                runs[key] = _forward_only(path, options, image)
                continue
            engine = LocalEngine(path, options)
            notices.add(engine.notice)
            runs[key] = lambda e=engine: e.run(image, [[-1]], need_gradients=False)
    ms = alternate(runs, rounds, warmup=5)
    report: dict[str, Any] = {"ms": ms, "notices": sorted(notices)}
    for suffix in ("", " cuda-graph"):
        for precision in ("", "_fp16"):
            base = ms.get(f"none{precision}{suffix}")
            if base:
                report[f"pooled{precision}{suffix} ratio"] = ms[f"pooled{precision}{suffix}"] / base
    return report


def display_rate(path: str, providers: str, cuda_graph: bool, n: int) -> dict[str, Any]:
    """The live loop on a 200 FPS source: displayed frames per second, and the model's own time."""
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions
    from realtime.live.loop import Loop
    from realtime.outputs.controls import Controls
    from realtime.sources.group import SourceSet

    engine = LocalEngine(path, EngineOptions(providers=providers, cuda_graph=cuda_graph))
    with SourceSet([LoopSource(synthetic_frames(30), 200.0, "200 FPS")]) as readers:
        start = time.perf_counter()
        summary = Loop([engine], readers, Controls(), (), display="model").run(n)
        seconds = time.perf_counter() - start
    return {"display_fps": summary.stats.display_fps, "model_ms": summary.stats.model_ms, "wall_s": seconds}


def markdown(report: dict[str, Any]) -> str:
    lines = ["| model | pooled / none | fp16 | CUDA graph | fp16 + CUDA graph | display FPS (200 FPS source) |"]
    lines.append("|---|---|---|---|---|---|")
    for name, row in report["models"].items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'][:120]} | | | | |")
            continue
        f = row["per_frame"]

        def cell(key: str, f: dict[str, Any] = f) -> str:
            ratio = f.get(f"{key} ratio")
            ms = f["ms"].get(key.replace(" ratio", ""))
            return f"{ratio:.3f} ({ms:.2f} ms)" if ratio and ms else "n/a"

        rates = " / ".join(f"{row[k]['display_fps']:.0f}" for k in ("display", "display cuda-graph") if k in row)
        lines.append(
            f"| {name} | {cell('pooled')} | {cell('pooled_fp16')} | {cell('pooled cuda-graph')} "
            f"| {cell('pooled_fp16 cuda-graph')} | {rates} (plain / CUDA graph) |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--models", default="vgg16,resnet50,mobilenet_v3_large")
    parser.add_argument("--providers", default="cuda", choices=("cuda", "tensorrt", "cpu"))
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--frames", type=int, default=600, help="frames for each live-loop run")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "graphs"
    work.mkdir(exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "providers": args.providers, "models": {}}
    for name in args.models.split(","):
        row: dict[str, Any] = {}
        try:
            paths = export_graphs(name, work)
            row["fp16_fidelity"] = fidelity(paths)
            row["per_frame"] = per_frame(paths, args.providers, args.rounds)
            row["display"] = display_rate(paths["pooled"], args.providers, False, args.frames)
            row["display cuda-graph"] = display_rate(paths["pooled"], args.providers, True, args.frames)
        except Exception as exc:  # a diagnostic run: record what failed, go on with the next model
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        report["models"][name] = row
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=float))
        print(f"== {name}\n{json.dumps(row, indent=1, default=float)}", flush=True)
    goals = {
        name: row["per_frame"].get("pooled cuda-graph ratio")
        for name, row in report["models"].items()
        if "per_frame" in row
    }
    report["goal"] = {n: ("met" if r is not None and r <= GOAL else "MISSED") + f" ({r})" for n, r in goals.items()}
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=float))
    print(markdown(report))
    print(f"goal: pooled <= {GOAL}x forward-only with CUDA graphs: {report['goal']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
