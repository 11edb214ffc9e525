"""What the benchmark measures in fresh processes (peak memory alone, or torch apart from TensorFlow).

    python -m scripts.bench.children export GRADCAM_EXPORT_ARGS...
    python -m scripts.bench.children rss MODEL SIZE
    python -m scripts.bench.children soak FRAMES SOURCES MODEL [MODEL ...]
    python -m scripts.bench.children torch NAME OUT.onnx
    python -m scripts.bench.children default-export NAME OUT.onnx   (torch's default exporter; timm:NAME)
    python -m scripts.bench.children onnx-export SOURCE.onnx GRADIENTS OUT.onnx

Each prints one JSON line last.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export(args: Sequence[str]) -> dict[str, Any]:
    """gradcam-export with these arguments: its time, each stage's, and this process's peak RSS."""
    from realtime.export import cli
    from realtime.export.pipeline import ExportError, export

    start = time.perf_counter()
    config, _ = cli.parse(list(args))
    try:
        result = export(config)
    except ExportError as exc:
        raise SystemExit(f"gradcam-export {' '.join(args)}: {exc}") from exc
    seconds = time.perf_counter() - start  # with the imports, as a user waits for it
    return {"seconds": seconds, "stages": dict(result.stages), "peak_rss_mb": peak_rss_mb()}


def session_rss(model: str, size: int) -> dict[str, Any]:
    """What an onnxruntime session of this graph adds to a process, after one run."""
    import onnxruntime as ort
    import psutil

    from realtime.engines.providers import cpu_session_options

    before = psutil.Process().memory_info().rss
    session = ort.InferenceSession(model, cpu_session_options(), providers=["CPUExecutionProvider"])
    feeds = {"image": np.zeros((1, size, size, 3), np.uint8), "targets": np.full((1, 1), -1, np.int64)}
    session.run(None, feeds)
    after = psutil.Process().memory_info().rss
    return {"session_mb": (after - before) / 2**20, "process_mb": after / 2**20}


def torch_export(name: str, path: Path) -> dict[str, Any]:
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
    return {"path": str(path)}


def default_export(name: str, path: Path) -> dict[str, Any]:
    """A torchvision or timm (`timm:NAME`) model with seeded random weights, through torch's default
    exporter as a user calls it: `torch.onnx.export(model, (x,), path)`."""
    sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
    import torch

    torch.manual_seed(0)
    if name.startswith("timm:"):
        import timm

        model = timm.create_model(name[5:], pretrained=False).eval()
    else:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path))
    return {"path": str(path)}


def onnx_export(source: Path, gradients: str, out: Path) -> dict[str, Any]:
    from realtime.export.pipeline import ExportConfig, export

    start = time.perf_counter()
    export(ExportConfig(onnx=source, gradients=gradients, output=out, quiet=True))
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "export":
        result = export(rest)
    elif command == "rss":
        result = session_rss(rest[0], int(rest[1]))
    elif command == "soak":
        from scripts.bench.live import soak_in_process

        result = soak_in_process(rest[2:], int(rest[0]), sources=int(rest[1]))
    elif command == "torch":
        result = torch_export(rest[0], Path(rest[1]))
    elif command == "default-export":
        result = default_export(rest[0], Path(rest[1]))
    elif command == "onnx-export":
        result = onnx_export(Path(rest[0]), rest[1], Path(rest[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
