"""Transformers: what Grad-CAM inside the graph costs against the forward-only graph of the same model.

DeiT-tiny at the last block's first LayerNorm (the default) and at the fourth block from the end,
Swin-T at its final norm; each through torch's default exporter with seeded random weights, batch 1,
CPU, timed in alternation with the forward-only graph. Each export runs in its own process: its
time and peak RSS are the ones a user sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench.timing import alternate, child

MODELS = ("timm:deit_tiny_patch16_224", "swin_t")
GOALS = {
    "deit_tiny_patch16_224 default": 1.10,
    "deit_tiny_patch16_224 fourth from the end": 1.40,
    "swin_t default": 1.03,
}


def _layers(source: Path) -> dict[str, str]:
    """The default layer and, for a ViT, the fourth block's first LayerNorm from the end (every block
    has two LayerNorms, norm1 and norm2; the default is the last block's norm1)."""
    from realtime.export import targets
    from realtime.export.importers.onnx_file import load_onnx

    layers = targets.list_layers(load_onnx(source))
    default = next(layer.name for layer in layers if layer.default)
    found = {"default": default}
    norms = [layer.name for layer in layers if layer.op_type == "LayerNormalization" and layer.grid is not None]
    if default in norms:
        found["fourth from the end"] = norms[norms.index(default) - 6]
    return found


def measure(folder: Path, rounds: int) -> dict[str, Any]:
    import onnxruntime as ort

    from realtime.engines.providers import cpu_session_options

    feeds = {
        "image": np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8),
        "targets": np.full((1, 1), -1, np.int64),
    }
    report: dict[str, Any] = {}
    for name in MODELS:
        short = name.replace("timm:", "")
        source = folder / f"{short}_default.onnx"
        child("default-export", name, str(source))
        out = folder / f"{short}_none.onnx"
        exports = {
            "none": child("export", "--onnx", str(source), "--gradients", "none", "--output", str(out), "--quiet")
        }
        paths = {"none": out}
        for label, layer in _layers(source).items():
            for gradients in ("pooled", "full"):
                key = f"{label} {gradients}"
                paths[key] = folder / f"{short}_{label.replace(' ', '_')}_{gradients}.onnx"
                exports[key] = child("export", "--onnx", str(source), "--layer", layer, "--gradients", gradients,
                                     "--output", str(paths[key]), "--quiet")  # fmt: skip
                exports[key]["layer"] = layer
        sessions = {k: ort.InferenceSession(str(p), cpu_session_options(), providers=["CPUExecutionProvider"])
                    for k, p in paths.items()}  # fmt: skip
        # three times the rounds: the fourth-block goal is a few ms, and a shared 2-core machine's bursts
        # moved 15-round medians by 0.1x between runs of the same graphs
        ms = alternate({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()}, 3 * rounds)
        report[short] = {k: {**exports[k], "ms": ms[k], "ratio": ms[k] / ms["none"]} for k in paths}
    return report


def goals(report: dict[str, Any]) -> dict[str, str]:
    from scripts.bench.timing import goal

    out = {}
    for key, bound in GOALS.items():
        model, label = key.split(" ", 1)
        row = report.get(model, {}).get(f"{label} pooled")
        if row is not None:
            out[f"{model} Grad-CAM at the {label} layer <= {bound:.2f}x forward-only"] = goal(row["ratio"], bound)
    return out


def table(report: dict[str, Any]) -> list[str]:
    lines = ["| model | graph | layer | ms | ratio to forward-only | export s | export peak RSS MB |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for model, rows in report.items():
        for key, row in rows.items():
            lines.append(f"| {model} | {key} | {row.get('layer', '')} | {row['ms']:.2f} | {row['ratio']:.3f} "
                         f"| {row['seconds']:.1f} | {row['peak_rss_mb']:.0f} |")  # fmt: skip
    return lines
