"""int8 on this CPU: both int8 forms (for VNNI CPUs and for those without) beside fp32, in one run.

For each form: ms per frame and the speed-up over fp32 (timed in alternation), the map correlation
and top-1 agreement with fp32 on held-out demo scenes, and the kernels onnxruntime runs (the
quantized op types of its optimized graph, with their weights' type: u8s8 or u8u8).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from scripts.bench.timing import alternate

QUANTIZED_OPS = {  # op type: the input holding its weight
    "QLinearConv": 3,
    "QLinearMatMul": 3,
    "QGemm": 3,
    "DynamicQuantizeMatMul": 1,
    "MatMulIntegerToFloat": 1,
    "MatMulInteger": 1,
    "ConvInteger": 1,
}
ACTIVATION = {"DynamicQuantizeMatMul": "u8", "MatMulIntegerToFloat": "u8"}  # dynamic: always u8 activations


def kernels(path: str | Path) -> dict[str, int]:
    """'QLinearConv u8s8': count, ... of the graph as onnxruntime optimizes it for this CPU."""
    import onnx
    import onnxruntime as ort

    from realtime.engines.providers import cpu_session_options

    with tempfile.TemporaryDirectory() as tmp:
        options = cpu_session_options()
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model = onnx.load(options.optimized_model_filepath)
    types = {i.name: i.data_type for i in model.graph.initializer}
    short = {onnx.TensorProto.INT8: "s8", onnx.TensorProto.UINT8: "u8"}
    found: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            weight = short.get(types.get(node.input[QUANTIZED_OPS[node.op_type]], 0), "?")
            found[f"{node.op_type} {ACTIVATION.get(node.op_type, 'u8')}{weight}"] += 1
    return dict(sorted(found.items()))


def cpu_forms(fp32: str, folder: Path, size: int, rounds: int, holdout: int = 30) -> dict[str, Any]:
    """Quantize `fp32` for both targets (demo calibration, scope all) and compare them on this CPU."""
    from realtime.engines import int8_cpu
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions
    from realtime.export.variants.int8 import calibration, quantize

    images = calibration.calibration_images("demo", (size, size), 32)
    held, masks = calibration.demo_holdout(holdout, (size, size))
    paths = {
        target: str(quantize.quantize(Path(fp32), folder / f"int8_{target}.onnx", images, "all", target))
        for target in int8_cpu.INT8_TARGETS
    }
    options = EngineOptions(providers="cpu", warmup=1)
    engines = {name: LocalEngine(p, options) for name, p in {"fp32": fp32, **paths}.items()}
    image = held[:1]
    ms = alternate({n: (lambda e=e: e.run(image, [[-1]], need_gradients=False)) for n, e in engines.items()}, rounds)
    forms = {}
    for target, path in paths.items():
        faithful = calibration.fidelity(Path(fp32), Path(path), held, masks)
        forms[target] = {
            "ms": ms[target],
            "speedup": ms["fp32"] / ms[target],
            "map_correlation": faithful.map_correlation,
            "top1_agreement": faithful.top1_agreement,
            "kernels": kernels(path),
        }
    here = int8_cpu.detect()
    return {
        "cpu": here.describe(),
        "vnni": bool(here.vnni),
        "chosen": here.target,
        "fp32_ms": ms["fp32"],
        "holdout_images": holdout,
        "forms": forms,
    }


def demo_forms(folder: Path, rounds: int) -> dict[str, Any]:
    """The same for the bundled fair demo model (the demo scenes are its own domain)."""
    from realtime.demo.models import demo_model_paths

    folder.mkdir(parents=True, exist_ok=True)
    return cpu_forms(str(demo_model_paths()["fair"]), folder, 224, rounds, holdout=100)


def table(name: str, result: dict[str, Any]) -> list[str]:
    """Markdown rows: one per int8 form, on this CPU."""
    rows = []
    for target, f in result["forms"].items():
        chosen = " (chosen here)" if target == result["chosen"] else ""
        kernel_text = ", ".join(f"{k} x{v}" for k, v in f["kernels"].items())
        rows.append(
            f"| {name} | {result['cpu']} | {target}{chosen} | {result['fp32_ms']:.1f} | {f['ms']:.1f} "
            f"| {f['speedup']:.2f}x | {f['map_correlation']:.4f} | {f['top1_agreement']:.3f} | {kernel_text} |"
        )
    return rows


HEADER = [
    "| model | CPU | int8 form | fp32 ms | int8 ms | speed-up | map correlation | top-1 agreement | kernels |",
    "|---|---|---|---|---|---|---|---|---|",
]


def summary(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = list(HEADER)
    for name, result in results.items():
        lines += table(name, result)
    return lines
