"""The corpus test's architectures at 224 px: what Grad-CAM at the default layer costs against the
forward-only graph of the same file (batch 1, CPU, timed in alternation).

Goals (issue 38): at most 1.05x for a model whose forward takes 30 ms or more on this machine, 1.15x below
that. The architectures and how each is exported are the corpus test's own (tests/helpers/corpus.py), so
the two measure the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench.timing import alternate

SIZE = 224
SLOW_MS = 30.0  # a forward at least this slow has the tighter goal
GOALS = {"slow": 1.05, "fast": 1.15}


def measure(folder: Path, rounds: int) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from realtime.engines.providers import cpu_session_options
    from realtime.export.pipeline import ExportConfig, export
    from tests.helpers.corpus import ARCHITECTURES

    image = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
    feeds = {"image": image, "targets": np.full((1, 1), -1, np.int64)}
    report: dict[str, Any] = {}
    for arch in ARCHITECTURES:
        torch.manual_seed(0)
        model = arch.build(SIZE).eval()
        source = folder / f"{arch.name}.onnx"
        x = torch.zeros(1, 3, SIZE, SIZE)
        if arch.exporter == "dynamo":
            torch.onnx.export(model, (x,), str(source))
        else:
            torch.onnx.export(model, (x,), str(source), dynamo=False, opset_version=17)
        sessions = {}
        try:
            for graph in ("none", "pooled"):
                out = export(ExportConfig(onnx=source, gradients=graph, output=folder / f"{arch.name}_{graph}.onnx",
                                          quiet=True, self_check=False)).output  # fmt: skip
                sessions[graph] = ort.InferenceSession(str(out), cpu_session_options(),
                                                       providers=["CPUExecutionProvider"])  # fmt: skip
        except Exception as exc:  # a model the exporter refuses at 224 (reported, not hidden)
            report[arch.name] = {"refused": str(exc).splitlines()[0][:200]}
            continue
        ms = alternate({g: (lambda s=s: s.run(None, feeds)) for g, s in sessions.items()}, rounds)
        ratio = ms["pooled"] / ms["none"]
        goal = GOALS["slow"] if ms["none"] >= SLOW_MS else GOALS["fast"]
        report[arch.name] = {"forward_ms": ms["none"], "gradcam_ms": ms["pooled"], "ratio": ratio, "goal": goal,
                             "exporter": arch.exporter, "library": arch.library}  # fmt: skip
    return report


def goals(report: dict[str, Any]) -> dict[str, str]:
    from scripts.bench.timing import goal

    return {f"{name} Grad-CAM vs forward-only": goal(row["ratio"], row["goal"])
            for name, row in report.items() if "ratio" in row}  # fmt: skip


def table(report: dict[str, Any]) -> list[str]:
    rows = [f"| architecture ({SIZE} px, batch 1, CPU) | exporter | forward-only ms | Grad-CAM ms | ratio | goal |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in report.items():
        if "refused" in row:
            rows.append(f"| {name} | | refused: {row['refused']} | | | |")
            continue
        rows.append(f"| {name} ({row['library']}) | {row['exporter']} | {row['forward_ms']:.1f} | "
                    f"{row['gradcam_ms']:.1f} | {row['ratio']:.3f} | {row['goal']:.2f} |")  # fmt: skip
    return rows
