"""Any layer: Grad-CAM at VGG16's block4_conv3 and Guided Grad-CAM to the input (with full or pooled weights),
against forward-only.

python -m scripts.bench.layers [--rounds N]     # exports VGG16 (random weights) four ways, then times them
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench.timing import alternate, child

VGG16_ARGS = ("--weights", "random", "--seed", "0")
GRAPHS = {  # name: extra gradcam-export arguments
    "block4_conv3": ("--layer", "block4_conv3"),
    "guided": ("--input-gradients", "guided"),  # with the full gradients at block5_conv3
    "guided_pooled": ("--input-gradients", "guided", "--gradients", "pooled"),  # what Guided Grad-CAM needs
}


def export_layers(folder: Path, forward_only: str | None = None) -> dict[str, Any]:
    """The forward-only graph (unless given) and the two any-layer graphs, each exported in its own process."""
    report: dict[str, Any] = {}
    todo = {"none": ("--gradients", "none"), **GRAPHS} if forward_only is None else dict(GRAPHS)
    for name, extra in todo.items():
        out = folder / f"vgg16_{name}.onnx"
        report[name] = {"path": str(out), **child("export", *VGG16_ARGS, *extra, "--output", str(out), "--quiet")}
    if forward_only is not None:
        report["none"] = {"path": forward_only}
    return report


def measure(paths: dict[str, str], rounds: int, live_frames: int = 40) -> dict[str, Any]:
    """ms per call (batch 1, K = 1) and the ratio to forward-only; the live loop on the guided graph."""
    from scripts.bench.graphs import sessions
    from scripts.bench.live import run_loop
    from tests.helpers.sources import synthetic_frames

    image = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    feeds = {"image": image, "targets": np.full((1, 1), -1, np.int64)}
    runs = {}
    for name, session in sessions(paths).items():
        wanted = {i.name: feeds[i.name] for i in session.get_inputs()}
        runs[name] = lambda s=session, f=wanted: s.run(None, f)
    ms = alternate(runs, rounds)
    del runs
    report: dict[str, Any] = {n: {"ms": v, "ratio": v / ms["none"]} for n, v in ms.items()}
    frames = synthetic_frames(30)
    report["live_guided"] = run_loop(paths["guided"], frames, live_frames, 30.0, method="guided-gradcam")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_layers(Path(tmp))
        report = {"export": exported, **measure({n: e["path"] for n, e in exported.items()}, args.rounds)}
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
