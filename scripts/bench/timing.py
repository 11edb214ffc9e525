"""Timing in alternation, medians, the machine's description, goals, and child processes.

Timings alternate between the things compared (a, b, c, a, b, c, ...) so that a noisy neighbour
slows all of them alike; every figure is a median. Child processes run modules of this package
(`python -m scripts.bench.children ...`), never program text.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def median_ms(samples: Sequence[float]) -> float:
    return float(np.median(np.asarray(samples)) * 1000.0)


def alternate(runs: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median ms of each callable, timed in alternation."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds + warmup):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: median_ms(values) for name, values in times.items()}


def child(*args: str, timeout: float = 600) -> dict[str, Any]:
    """Run `python -m scripts.bench.children ARGS` in a fresh interpreter; it prints one JSON line last."""
    out = subprocess.run(
        [sys.executable, "-m", "scripts.bench.children", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"bench child {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def machine() -> dict[str, Any]:
    import cv2
    import onnxruntime as ort

    from realtime.engines import int8_cpu as int8_cpu

    here = int8_cpu.detect()  # realtime/cpu.py reads /proc/cpuinfo's model name once
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": here.name,
        "cores": os.cpu_count(),
        "int8_dot_products": here.describe(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "pyav": _version("av"),  # the recordings' encoders (realtime/encoders.py)
    }


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def goal(value: float, limit: float, below: bool = True) -> str:
    ok = value <= limit if below else value >= limit
    return f"{'met' if ok else 'MISSED'} ({value:.3f} {'<=' if below else '>='} {limit})"
