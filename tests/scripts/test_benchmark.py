"""scripts/benchmark.py: the quick run writes well-formed figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.commands import ROOT


def test_quick_benchmark_writes_well_formed_json(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "benchmark.py"),
            "--quick",
            "--soak-frames",
            "60",
            "--json",
            str(out),
            "--markdown",
            str(md),
        ],
        capture_output=True,
        text=True,
        timeout=1500,  # the quick run takes 2-4 minutes; a slow shared CPU may take several times that
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    for key in (
        "machine",
        "export",
        "model_cost",
        "onnx_models",
        "backward_floor",
        "session_rss",
        "seed",
        "pipeline",
        "soak",
        "drawing_scale",
        "side_by_side",
        "layers",
        "batching",
        "int8_cpu",
        "real_world",
        "goals",
    ):
        assert key in report, key
    for graph in ("none", "pooled", "full"):
        for batch in ("batch1", "batch4"):
            cell = report["model_cost"][batch][graph]
            assert math.isfinite(cell["ms"]) and cell["ms"] > 0
        assert report["export"][graph]["peak_rss_mb"] > 0
        stages = report["export"][graph]["stages"]  # every stage the export ran, timed
        assert {"import", "build", "portable"} <= set(stages) and all(v >= 0 for v in stages.values())  # --onnx
        assert ("self-check" in stages) == (graph != "none")
    assert report["model_cost"]["batch1"]["none"]["ratio"] == 1.0
    assert report["soak"]["frames"] == 60 and report["soak"]["models"] == 2 and report["soak"]["sources"] == 2
    for run in report["side_by_side"].values():
        assert len(run["engine_ms"]) == 2 and run["display_fps"] > 0
    assert report["batching"]["sources"] == 4 and report["batching"]["batched"] > 0
    assert report["onnx_models"]["mobilenet_v3_large"]["floor"]["pooled"]["weights"] == [[1280, 960]]
    assert report["seed"]["max_abs_map_diff_vs_reference"] < 1e-3  # the fast path gives the same map
    onnx_goals = [k for k in report["goals"] if k.startswith("mobilenet_v3_large")]
    assert len(onnx_goals) == 2 and all(report["goals"][k].startswith(("met", "MISSED")) for k in onnx_goals)
    assert all(v.startswith("n/a") for k, v in report["goals"].items() if k not in onnx_goals)  # VGG16's goals
    assert "| graph |" in md.read_text()
    from realtime.engines import int8_cpu

    for name in ("demo-architecture pooled", "fair demo model"):  # both int8 forms, side by side on this CPU
        result = report["int8_cpu"][name]
        assert result["chosen"] == int8_cpu.detect().target and result["cpu"] == int8_cpu.detect().describe()
        for target in (int8_cpu.VNNI, int8_cpu.NO_VNNI):
            form = result["forms"][target]
            assert form["speedup"] > 0 and -1 <= form["map_correlation"] <= 1
            assert any(k.startswith("QLinearConv u8s8") for k in form["kernels"]), form["kernels"]
    demo_kernels = report["int8_cpu"]["fair demo model"]["forms"]
    assert "DynamicQuantizeMatMul u8u8" in demo_kernels[int8_cpu.NO_VNNI]["kernels"]
    assert "DynamicQuantizeMatMul u8s8" in demo_kernels[int8_cpu.VNNI]["kernels"]
    assert "| fair demo model |" in md.read_text()
    row = report["real_world"]["resnet18"]  # torch's default exporter, timed against the original file
    assert row["import_ratio"] > 0 and row["pooled"]["ratio"] > 0 and "| resnet18 |" in md.read_text()
