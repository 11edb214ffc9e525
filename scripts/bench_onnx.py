"""Any ONNX classifier: Grad-CAM's cost against forward-only for torchvision exports, batch 1, CPU.

Importable measuring code for scripts/benchmark.py, and a small CLI for the two steps that must run in
fresh processes: the torch export (torch and TensorFlow do not share a process safely) and each
gradcam-export (its peak RSS is measured alone).

    python -m scripts.bench_onnx torch NAME OUT.onnx
    python -m scripts.bench_onnx export SOURCE.onnx GRADIENTS OUT.onnx
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet50", "mobilenet_v3_large")
GRAPHS = ("none", "pooled", "full")


def torch_export(name: str, path: Path) -> None:
    """A torchvision model with seeded random weights, exported as the README shows."""
    sys.modules.setdefault("triton", None)  # type: ignore[arg-type]  # not needed for a CPU export
    import torch
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    torch.onnx.export(
        model, torch.zeros(1, 3, 224, 224), str(path), opset_version=17, dynamo=False,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
    )  # fmt: skip


def gradcam_export(source: Path, gradients: str, out: Path) -> dict[str, float]:
    """gradcam-export --onnx in this process; its time and this process's peak RSS."""
    from realtime.export.exporter import ExportConfig, export

    start = time.perf_counter()
    export(ExportConfig(onnx=source, gradients=gradients, output=out, quiet=True))
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.bench_onnx", *args], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench_onnx {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def measure(
    folder: Path, rounds: int, alternate: Callable[[dict[str, Callable[[], object]], int], dict[str, float]],
    models: Sequence[str] = MODELS,
) -> dict[str, Any]:  # fmt: skip
    """Per model: export time and peak RSS of each graph, and ms per call with its ratio to forward-only."""
    import onnxruntime as ort

    from realtime.engine import cpu_session_options

    report: dict[str, Any] = {}
    feeds = {
        "image": np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8),
        "targets": np.full((1, 1), -1, np.int64),
    }
    for name in models:
        source = folder / f"{name}.onnx"
        _child("torch", name, str(source))
        row: dict[str, Any] = {}
        sessions = {}
        for graph in GRAPHS:
            out = folder / f"{name}_{graph}.onnx"
            row[graph] = json.loads(_child("export", str(source), graph, str(out)))
            sessions[graph] = ort.InferenceSession(str(out), cpu_session_options(), providers=["CPUExecutionProvider"])
        ms = alternate({g: (lambda s=s: s.run(None, feeds)) for g, s in sessions.items()}, rounds)
        for graph in GRAPHS:
            row[graph].update({"ms": ms[graph], "ratio": ms[graph] / ms["none"]})
        report[name] = row
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["torch"]:
        torch_export(args[1], Path(args[2]))
        return 0
    if args[:1] == ["export"]:
        print(json.dumps(gradcam_export(Path(args[1]), args[2], Path(args[3]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
