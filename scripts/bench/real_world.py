"""Real-world ONNX files (torch's default exporter, timm's tf_* padding): what the import costs.

Per model, batch 1, CPU, timed in alternation: the original file in onnxruntime, with the numpy
preprocessing a user of that file needs (uint8 BGR -> normalised float NCHW) inside the timed call,
and alone; the imported forward-only graph (uint8 frames, preprocessing in the graph); and the pooled
and full Grad-CAM graphs, each as a ratio to the forward-only graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench.graphs import GRAPHS
from scripts.bench.timing import alternate, child

MODELS = ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf", "densenet121", "convnext_tiny",
          "timm:tf_efficientnet_b0")  # fmt: skip


def measure(folder: Path, rounds: int, models: Sequence[str] = MODELS) -> dict[str, Any]:
    import onnxruntime as ort

    from realtime.engines.providers import cpu_session_options
    from realtime.export.preprocessing import PRESETS, preprocess_numpy

    image = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    feeds = {"image": image, "targets": np.full((1, 1), -1, np.int64)}
    report: dict[str, Any] = {}
    for name in models:
        short = name.replace("timm:", "")
        source = folder / f"{short}_default.onnx"
        child("default-export", name, str(source))
        row: dict[str, Any] = {}
        sessions = {
            "original": ort.InferenceSession(str(source), cpu_session_options(), providers=["CPUExecutionProvider"])
        }
        original_input = sessions["original"].get_inputs()[0].name
        x = preprocess_numpy(image, PRESETS["torch"], "NCHW")
        for graph in GRAPHS:
            out = folder / f"{short}_default_{graph}.onnx"
            row[graph] = child("onnx-export", str(source), graph, str(out))
            sessions[graph] = ort.InferenceSession(str(out), cpu_session_options(), providers=["CPUExecutionProvider"])
        runs = {g: (lambda s=s: s.run(None, feeds)) for g, s in sessions.items() if g != "original"}
        runs["original"] = lambda s=sessions["original"], n=original_input, v=x: s.run(None, {n: v})
        runs["original_preprocessed"] = lambda s=sessions["original"], n=original_input: s.run(
            None, {n: preprocess_numpy(image, PRESETS["torch"], "NCHW")}
        )
        ms = alternate(runs, rounds)
        row["original"] = {"ms": ms["original"], "with_preprocessing_ms": ms["original_preprocessed"]}
        for graph in GRAPHS:
            row[graph].update({"ms": ms[graph], "ratio": ms[graph] / ms["none"]})
        row["import_ratio"] = ms["none"] / ms["original_preprocessed"]  # the same work: frame in, logits out
        row["import_ratio_model_only"] = ms["none"] / ms["original"]
        report[short] = row
    return report


def goals(report: dict[str, Any]) -> dict[str, str]:
    from scripts.bench.timing import goal

    out = {}
    for name, row in report.items():
        out[f"{name} (default exporter): imported forward-only <= 1.02x the original file"] = goal(
            row["import_ratio"], 1.02
        )
        out[f"{name} (default exporter): Grad-CAM pooled <= 1.05x forward-only"] = goal(row["pooled"]["ratio"], 1.05)
    return out


def table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| model (torch's default exporter) | original file ms (alone) | + numpy preprocessing ms | imported "
        "forward-only ms | ratio | pooled ms | ratio | full ms | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report.items():
        lines.append(
            f"| {name} | {row['original']['ms']:.2f} | {row['original']['with_preprocessing_ms']:.2f} "
            f"| {row['none']['ms']:.2f} | {row['import_ratio']:.3f} "
            f"| {row['pooled']['ms']:.2f} | {row['pooled']['ratio']:.3f} | {row['full']['ms']:.2f} "
            f"| {row['full']['ratio']:.3f} |"
        )
    return lines
