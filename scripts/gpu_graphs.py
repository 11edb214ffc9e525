"""The ONNX-level backward on a GPU: new graphs on CUDA, CUDA graphs, fp16, batching.

    python scripts/gpu_graphs.py OUT_DIR [--models resnet50,mobilenet_v3_large,vgg16]

Runs where torch, torchvision and onnxruntime-gpu are installed (the lent GPU image has the first
two). Exports torchvision models with seeded random weights, builds none/pooled/full Grad-CAM graphs
with gradcam-export --onnx (on the CPU), then on CUDA: CPU parity with TF32 off, ms per call at batch
1 and 8 (IO binding), the same at batch 1 with CUDA graphs on fixed-shape copies, an fp16 copy of the
pooled graph, and four sources in one batch against four calls. Writes gpu_graphs.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CUDA = "CUDAExecutionProvider"


def torchvision_onnx(name: str, folder: Path) -> Path:
    """torchvision `name` with seeded random weights as ONNX (opset 17, dynamic batch)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    source = folder / f"{name}.onnx"
    torch.onnx.export(
        model, torch.zeros(1, 3, 224, 224), str(source), opset_version=17, dynamo=False,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
    )  # fmt: skip
    return source


def export_models(names: Sequence[str], folder: Path) -> dict[str, dict[str, str]]:
    """torchvision -> ONNX -> Grad-CAM graphs (none, pooled, full), with export times."""
    from realtime.export.pipeline import ExportConfig, export

    paths: dict[str, dict[str, str]] = {}
    for name in names:
        source = torchvision_onnx(name, folder)
        paths[name] = {}
        for gradients in ("none", "pooled", "full"):
            start = time.perf_counter()
            out = folder / f"{name}_{gradients}.onnx"
            export(ExportConfig(onnx=source, gradients=gradients, output=out, quiet=True))
            paths[name][gradients] = str(out)
            paths[name][f"{gradients}_export_s"] = f"{time.perf_counter() - start:.1f}"
    return paths


def session(path: str | bytes, provider: str, **options: str) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    chain: list[Any] = [(provider, options)] if provider == CUDA else []
    return ort.InferenceSession(path, so, providers=[*chain, "CPUExecutionProvider"])


def outputs(sess: Any, image: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"image": image, "targets": targets}), strict=True))


def parity(paths: dict[str, dict[str, str]]) -> dict[str, Any]:
    """CUDA (TF32 off) against the CPU on the same graph and inputs."""
    image = np.random.default_rng(2).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    targets = np.array([[-1, 3], [5, -1]], np.int64)
    report: dict[str, Any] = {}
    for name, variants in paths.items():
        for gradients in ("pooled", "full"):
            cpu = outputs(session(variants[gradients], "CPUExecutionProvider"), image, targets)
            gpu_sess = session(variants[gradients], CUDA, use_tf32="0")
            gpu = outputs(gpu_sess, image, targets)
            report[f"{name} {gradients}"] = {
                "provider": gpu_sess.get_providers()[0],
                "classes_equal": bool(np.array_equal(cpu["classes"], gpu["classes"])),
                **{f"{k}_max_abs_rel": _rel(gpu[k], cpu[k]) for k in ("logits", "weights", "cam")},
            }
    return report


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def timed(fn: Callable[[], Any], rounds: int, warmup: int = 5) -> float:
    """Median ms of `fn`, after a warm-up."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples) * 1000.0)


def bound_runner(path: str, batch: int, cuda_graph: bool, **options: str) -> tuple[Callable[[], Any], str]:
    """A run with inputs and outputs in fixed CUDA buffers (what CUDA graphs need), synchronised."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    if cuda_graph:  # fixed shapes: onnxruntime then folds every shape computation, nothing is left on the CPU
        for value, dims in ((model.graph.input[0], [batch, 224, 224, 3]), (model.graph.input[1], [batch, 1])):
            for d, size in zip(value.type.tensor_type.shape.dim, dims, strict=True):
                d.Clear()
                d.dim_value = size
    sess = session(model.SerializeToString(), CUDA, enable_cuda_graph="1" if cuda_graph else "0", **options)
    image = np.random.default_rng(1).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    targets = np.full((batch, 1), -1, np.int64)
    probe = outputs(session(model.SerializeToString(), CUDA, **options), image, targets)
    binding = sess.io_binding()
    binding.bind_ortvalue_input("image", ort.OrtValue.ortvalue_from_numpy(image, "cuda", 0))
    binding.bind_ortvalue_input("targets", ort.OrtValue.ortvalue_from_numpy(targets, "cuda", 0))
    for out in sess.get_outputs():
        value = ort.OrtValue.ortvalue_from_shape_and_type(probe[out.name].shape, probe[out.name].dtype, "cuda", 0)
        binding.bind_ortvalue_output(out.name, value)

    def run() -> None:
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run, sess.get_providers()[0]


def speed(paths: dict[str, dict[str, str]], rounds: int) -> dict[str, Any]:
    """ms per call on CUDA, TF32 on (onnxruntime's default), with and without CUDA graphs."""
    report: dict[str, Any] = {}
    for name, variants in paths.items():
        for mode, batch, graph in (("plain b1", 1, False), ("cuda graph b1", 1, True), ("plain b8", 8, False)):
            row: dict[str, Any] = {}
            for gradients in ("none", "pooled", "full"):
                try:
                    run, provider = bound_runner(variants[gradients], batch, graph)
                    row[gradients] = timed(run, rounds)
                    row["provider"] = provider
                except Exception as exc:  # a diagnostic run: record what failed, go on
                    row[gradients] = f"failed: {str(exc).splitlines()[0][:300]}"
            base = row.get("none")
            if isinstance(base, float):
                row.update({f"{g}_ratio": row[g] / base for g in ("pooled", "full") if isinstance(row.get(g), float)})
            report[f"{name} {mode}"] = row
    return report


def to_fp16(source: str, target: Path) -> None:
    """fp16 weights and arithmetic, fp32 inputs and outputs (onnxconverter-common), with shapes inferred first
    so every intermediate tensor's type is known, and our own float casts retargeted to fp16."""
    import onnx
    from onnx import TensorProto
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.shape_inference.infer_shapes(onnx.load(source)), keep_io_types=True)
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.output)}
    for node in model.graph.node:
        for attr in node.attribute:
            retarget = node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT
            if retarget and types.get(node.output[0]) == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT16
    onnx.save(model, str(target))


def fp16(paths: dict[str, dict[str, str]], folder: Path, rounds: int) -> dict[str, Any]:
    """An fp16 copy of each pooled graph (inputs and outputs stay as they are) against fp32 on CUDA."""
    image = np.random.default_rng(4).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    targets = np.full((4, 1), -1, np.int64)
    report: dict[str, Any] = {}
    for name, variants in paths.items():
        half = folder / f"{name}_pooled_fp16.onnx"
        try:
            to_fp16(variants["pooled"], half)
            ref = outputs(session(variants["pooled"], CUDA, use_tf32="0"), image, targets)
            got = outputs(session(str(half), CUDA), image, targets)
            corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(got["cam"], ref["cam"], strict=True)]
            run32, _ = bound_runner(variants["pooled"], 1, True)
            run16, provider = bound_runner(str(half), 1, True)
            report[name] = {
                "provider": provider,
                "top1_agree": float(np.mean(got["classes"][:, 0] == ref["classes"][:, 0])),
                "logits_max_abs_rel": _rel(got["logits"], ref["logits"]),
                "cam_max_abs": float(np.abs(got["cam"] - ref["cam"]).max()),
                "cam_correlation_min": float(np.min(corr)),
                "ms_fp32_cuda_graph": timed(run32, rounds),
                "ms_fp16_cuda_graph": timed(run16, rounds),
            }
        except Exception as exc:
            report[name] = f"failed: {str(exc).splitlines()[0][:300]}"
    return report


def batching(paths: dict[str, dict[str, str]], rounds: int) -> dict[str, Any]:
    """Four sources in one batch-4 call against four batch-1 calls (pooled, plain IO binding)."""
    report: dict[str, Any] = {}
    for name, variants in paths.items():
        one, _ = bound_runner(variants["pooled"], 1, False)
        four, _ = bound_runner(variants["pooled"], 4, False)
        ms_one, ms_four = timed(one, rounds), timed(four, rounds)
        report[name] = {"four_calls_ms": 4 * ms_one, "one_batch4_call_ms": ms_four, "gain": 4 * ms_one / ms_four}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--models", default="resnet50,mobilenet_v3_large,vgg16")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--sections", default="parity,speed,fp16,batching")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/gpu_graphs")
    work.mkdir(parents=True, exist_ok=True)
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    report: dict[str, Any] = {"onnxruntime": ort.__version__, "providers": ort.get_available_providers()}

    def section(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            report[name] = fn()
        except Exception:
            import traceback

            report[name] = {"error": traceback.format_exc()[-2500:]}
        report[f"{name}_s"] = round(time.perf_counter() - start, 1)
        print(f"== {name}\n{json.dumps(report[name], indent=1, default=float)}", flush=True)
        (args.out / "gpu_graphs.json").write_text(json.dumps(report, indent=1, default=float))
        return report[name]

    paths = section("export", lambda: export_models(args.models.split(","), work))
    for name, fn in (
        ("parity", lambda: parity(paths)),
        ("speed", lambda: speed(paths, args.rounds)),
        ("fp16", lambda: fp16(paths, work, args.rounds)),
        ("batching", lambda: batching(paths, args.rounds)),
    ):
        if name in args.sections.split(","):
            section(name, fn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
