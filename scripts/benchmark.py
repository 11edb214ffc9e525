"""Every speed and memory claim, measured side by side in one run, as ratios of medians.

    python scripts/benchmark.py                     # VGG16 (random weights), about 10 minutes on 2 cores
    python scripts/benchmark.py --quick             # the small demo architecture, a few minutes
    python scripts/benchmark.py --json out.json --markdown out.md
    python scripts/benchmark.py --int8-only         # int8 on this CPU: both forms against fp32, a few minutes
    python scripts/benchmark.py --real-world-only   # torch's default exporter and timm: the import's cost
    python scripts/benchmark.py --transformers-only  # DeiT-tiny and Swin-T: Grad-CAM against forward-only
    python scripts/benchmark.py --recording-only    # display FPS with and without --record, per format
    python scripts/benchmark.py --detectors-only    # YOLOv8n at 640: per-box Grad-CAM against the plain file
    python scripts/benchmark.py --corpus-only       # the corpus test's architectures at 224: Grad-CAM vs forward

The measuring code lives in scripts/bench/ (importable, with its child processes as modules);
this script only chooses what to run and writes the report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # scripts.* when run as `python scripts/benchmark.py`

from realtime.progress import Progress  # noqa: E402
from scripts.bench import (  # noqa: E402
    corpus,
    detectors,
    drawing,
    graphs,
    int8,
    layers,
    live,
    onnx_models,
    real_world,
    recording,
    report,
    transformers,
    triton,
)
from scripts.bench.timing import child, machine  # noqa: E402


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    json: Path | None = None
    markdown: Path | None = None
    soak_frames: int | None = None
    work: Path | None = None
    int8_only: bool = False
    real_world_only: bool = False
    transformers_only: bool = False
    recording_only: bool = False
    triton_only: bool = False
    detectors_only: bool = False
    corpus_only: bool = False


def parse_config(argv: Sequence[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small model and few rounds: a smoke run")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the markdown report here")
    parser.add_argument("--soak-frames", type=int, help="frames for the soak (default 10000, quick 200)")
    parser.add_argument("--work", type=Path, help="folder for the exported graphs (default: a temp folder)")
    parser.add_argument(
        "--int8-only", action="store_true", help="only int8 on this CPU: both int8 forms against fp32, their kernels"
    )
    parser.add_argument(
        "--real-world-only", action="store_true", help="only real-world ONNX files: torch's default exporter, timm"
    )
    parser.add_argument(
        "--transformers-only", action="store_true", help="only transformers: DeiT-tiny and Swin-T against forward-only"
    )
    parser.add_argument(
        "--recording-only", action="store_true", help="only recording: display FPS with and without --record"
    )
    parser.add_argument(
        "--triton-only", action="store_true", help="only Triton: a real local server against in-process, N clients"
    )
    parser.add_argument(
        "--detectors-only", action="store_true", help="only detectors: YOLOv8n per-box Grad-CAM, Ultralytics beside it"
    )
    parser.add_argument(
        "--corpus-only", action="store_true", help="only the corpus test's architectures: Grad-CAM vs forward-only"
    )
    return BenchConfig(**vars(parser.parse_args(argv)))


def measure(config: BenchConfig, work: Path) -> dict[str, Any]:
    quick, rounds = config.quick, 3 if config.quick else 15
    progress = Progress(20)
    r: dict[str, Any] = {"machine": machine(), "quick": quick}
    subject = graphs.small_subject(work) if quick else graphs.VGG16
    r["subject"] = subject.name
    with progress.step(f"exporting {subject.name}: forward-only, pooled, full"):
        r["export"] = graphs.export_all(subject, work)
    paths = {g: r["export"][g]["path"] for g in graphs.GRAPHS}
    size = subject.input_size
    with progress.step("any ONNX classifier: torchvision exports, Grad-CAM against forward-only (batch 1)"):
        models = ("mobilenet_v3_large",) if quick else onnx_models.MODELS
        r["onnx_models"] = onnx_models.measure(work, rounds, models)
    with progress.step("real-world ONNX: torch's default exporter and timm's run-time padding"):
        r["real_world"] = real_world.measure(work, rounds, ("resnet18",) if quick else real_world.MODELS)
    with progress.step("model cost, batch 1 and 4, K = 1, 3, 5"):
        r["model_cost"] = graphs.model_cost(paths, size, (1, 4), (1, 3, 5), rounds)
    with progress.step("the weight-read floor of an exact backward"):
        r["backward_floor"] = graphs.backward_floor(paths, size, rounds)
    with progress.step("session RSS of each graph, in fresh processes"):
        r["session_rss"] = graphs.session_rss(paths, size)
    with progress.step("the seed's method: Keras GradientTape per frame"):
        r["seed"] = graphs.seed_method(subject, paths["full"], max(3, rounds // 3))
    frames = live.synthetic_frames(30)
    with progress.step("the live loop on a 640x480 source at 30 FPS"):
        r["pipeline"] = live.run_loop(paths["full"], frames, 20 if quick else 60, fps=30.0)
    from realtime.demo.models import demo_model_paths

    demo = demo_model_paths()
    soak_frames = config.soak_frames or (200 if quick else 10_000)
    with progress.step(f"soak: {soak_frames} frames, two models on two sources"):
        r["soak"] = child("soak", str(soak_frames), "2", str(demo["biased"]), str(demo["fair"]), timeout=3600)
    with progress.step("camera-rate display: 30 FPS source, fp32 full graph, maps carried by flow"):
        r["camera_rate"] = live.camera_rate(paths["full"], frames, 60 if quick else 300)
    with progress.step("tracking on the demo at model rates of 5, 10 and 15 FPS"):
        r["tracking"] = drawing.tracking((5,) if quick else (5, 10, 15))  # quick: the rate the goal names
    with progress.step("int8: quantizing the pooled and full graphs (demo calibration)"):
        r["int8_export"] = graphs.export_int8(subject, work)
    int8_paths = {name: r["int8_export"][name]["path"] for name in graphs.INT8_VARIANTS}
    with progress.step("int8 on this CPU: the forms for CPUs with and without VNNI, their kernels"):
        r["int8_cpu"] = int8_cpu(paths["pooled"], subject, work, rounds)
    with progress.step("int8 against fp32, batch 1, and the live loop on int8"):
        r["int8"] = graphs.int8_cost({g: paths[g] for g in ("pooled", "full")}, int8_paths, size, rounds)
        r["int8_pipeline"] = live.run_loop(int8_paths["pooled"], frames, 20 if quick else 120, 30.0)
    with progress.step("side by side: two models on every frame (the demo pair; fp32 against int8)"):
        n = 30 if quick else 90
        r["side_by_side"] = {  # both on a 30 FPS camera: the demo pair keeps up with it, VGG16 sets its own rate
            "demo models": live.run_loop([str(demo["biased"]), str(demo["fair"])], frames, n * 3, 30.0),
            f"{subject.name} fp32 + int8": live.run_loop([paths["pooled"], int8_paths["pooled"]], frames, n, 30.0),
        }
    with progress.step("any layer: Grad-CAM at block4_conv3 and Guided Grad-CAM to the input"):
        if quick:  # VGG16 only: the small architecture has no block4_conv3
            r["layers"] = {"skipped": "--quick"}
        else:
            exported = layers.export_layers(work, forward_only=paths["none"])
            r["layers"] = {"export": exported, **layers.measure({n: e["path"] for n, e in exported.items()}, rounds)}
    with progress.step("batching: four sources in one call against four calls"):
        r["batching"] = live.batching(paths["pooled"], size, 4, rounds)
    with progress.step("browser view: loop rate alone and with 4 streaming + 1 stalled client"):
        seconds = 1.0 if quick else 8.0
        r["browser_load"] = {
            "model_rate": live.browser_load(paths["pooled"], frames, 30.0, seconds),
            "camera_rate_demo": live.browser_load(str(demo["fair"]), frames, 30.0, seconds),
        }
    with progress.step("drawing cost by frame size"):
        sizes = ((320, 240), (640, 480), (1280, 720), (1920, 1080))
        r["drawing_scale"] = drawing.drawing_scale(sizes, rounds * 2)
    with progress.step("GPU providers"):
        from scripts.bench import gpu

        working = gpu.gpu_available()
        r["gpu"] = (
            "no working GPU provider here: CUDA/TensorRT rows skipped"
            if working is None
            else gpu.gpu_model_cost(paths, size, rounds)
        )
    r["goals"] = report.goals(r)
    return r


def int8_cpu(fp32_pooled: str, subject: graphs.Subject, work: Path, rounds: int) -> dict[str, Any]:
    """Both int8 forms of the subject's pooled graph and of the fair demo model, on this CPU."""
    return {
        f"{subject.name} pooled": int8.cpu_forms(fp32_pooled, work, subject.input_size, rounds),
        "fair demo model": int8.demo_forms(work / "demo", rounds * 2),
    }


def measure_int8(config: BenchConfig, work: Path) -> dict[str, Any]:
    """--int8-only: the subject's pooled fp32 graph, then int8_cpu."""
    progress = Progress(2)
    subject = graphs.small_subject(work) if config.quick else graphs.VGG16
    with progress.step(f"exporting {subject.name} pooled"):
        out = work / f"{subject.name}_pooled.onnx"
        exported = child("export", *subject.export_args, "--gradients", "pooled", "--output", str(out), "--quiet")
    with progress.step("int8 on this CPU: the forms for CPUs with and without VNNI, their kernels"):
        forms = int8_cpu(str(out), subject, work, 3 if config.quick else 15)
    return {"machine": machine(), "quick": config.quick, "subject": subject.name, "export": exported, "int8_cpu": forms}


def run(config: BenchConfig) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = config.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        focused = {real_world: config.real_world_only, transformers: config.transformers_only,
                   recording: config.recording_only, triton: config.triton_only,
                   detectors: config.detectors_only, corpus: config.corpus_only}  # fmt: skip
        chosen = next((module for module, wanted in focused.items() if wanted), None)
        if chosen is not None:
            quick, full = (1, 3) if chosen in (recording, triton) else (3, 15)
            measured = chosen.measure(work, quick if config.quick else full)
            results = {"machine": machine(), chosen.__name__.rsplit(".", 1)[-1]: measured}
            results["goals"] = chosen.goals(measured)
            text = "\n".join([str(results["machine"]), *chosen.table(measured), "",
                              *(f"- {k}: {v}" for k, v in results["goals"].items())])  # fmt: skip
        else:
            results = measure_int8(config, work) if config.int8_only else measure(config, work)
            text = report.int8_markdown(results) if config.int8_only else report.markdown(results)
    print(text)
    for path, content in ((config.json, json.dumps(results, indent=2, default=str)), (config.markdown, text)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            partial.write_text(content)
            partial.replace(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_config(argv))


if __name__ == "__main__":
    sys.exit(main())
