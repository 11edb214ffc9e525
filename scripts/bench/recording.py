"""What recording costs the live view: display FPS with and without --record, for each format.

The demo (one 30 FPS scene, the biased and the fair model side by side) and the mosaic of the README's
"Side by side" block (two 30 FPS scenes, the same two models: one batch per model per step). The runs
alternate within each round, so a busy moment of the machine hits every format alike.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from realtime.demo.models import demo_model_paths
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.live.loop import Loop
from realtime.outputs.base import Output
from realtime.outputs.controls import Controls
from realtime.outputs.recording import Recorder
from realtime.sources.demo import DemoSource
from realtime.sources.group import SourceSet
from scripts.bench.timing import goal

FORMATS = ("", ".webm", ".mp4", ".avi")  # "": no recording
LAYOUTS = {"demo": 1, "side by side": 2}  # sources
GOAL = 0.95  # display FPS while recording, as a share of the same view's without


def display_fps(engines: list[LocalEngine], sources: int, suffix: str, frames: int, folder: Path) -> tuple[float, str]:
    """One run of the loop as gradcam-live --demo makes it; the display rate and the codec written."""
    outputs: list[Output] = []
    recorder = Recorder(folder / f"bench{suffix}", folder, 30.0, log=lambda _: None) if suffix else None
    if recorder is not None:
        outputs.append(recorder)
    with SourceSet([DemoSource() for _ in range(sources)]) as readers:
        summary = Loop(engines, readers, Controls(), outputs, display="model").run(frames)
    codec = recorder.recorder.codec if recorder and recorder.recorder else ""
    if recorder is not None:
        recorder.close()  # verified: a file that does not hold every frame raises
    return summary.stats.display_fps, codec


def measure(work: Path, rounds: int) -> dict[str, Any]:
    paths = demo_model_paths()
    engines = [LocalEngine(paths[name], EngineOptions(providers="cpu")) for name in ("biased", "fair")]
    frames = 240 if rounds > 1 else 120
    fps: dict[str, dict[str, list[float]]] = {layout: {f: [] for f in FORMATS} for layout in LAYOUTS}
    codecs: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for _ in range(rounds):
            for layout, sources in LAYOUTS.items():
                for suffix in FORMATS:
                    rate, codec = display_fps(engines, sources, suffix, frames, Path(tmp))
                    fps[layout][suffix].append(rate)
                    codecs[suffix or "none"] = codec
    result: dict[str, Any] = {"frames": frames, "rounds": rounds, "codecs": codecs}
    for layout in LAYOUTS:
        plain = statistics.median(fps[layout][""])
        result[layout] = {
            (suffix or "none"): {
                "display_fps": round(statistics.median(fps[layout][suffix]), 2),
                "ratio": round(statistics.median(fps[layout][suffix]) / plain, 3),
            }
            for suffix in FORMATS
        }
    return result


def goals(measured: dict[str, Any]) -> dict[str, str]:
    return {
        f"{layout}, recording {suffix} / without": goal(measured[layout][suffix]["ratio"], GOAL, below=False)
        for layout in LAYOUTS
        for suffix in FORMATS[1:]
    }


def table(measured: dict[str, Any]) -> list[str]:
    rows = [
        f"Display FPS, median of {measured['rounds']} rounds of {measured['frames']} frames (30 FPS scenes):",
        "",
        "| view | no recording | " + " | ".join(f"{s} ({measured['codecs'][s]})" for s in FORMATS[1:]) + " |",
        "|---|---|" + "---|" * (len(FORMATS) - 1),
    ]
    for layout in LAYOUTS:
        row = measured[layout]
        cells = [f"{row[s]['display_fps']:.1f} ({row[s]['ratio']:.2f}x)" for s in FORMATS[1:]]
        rows.append(f"| {layout} | {row['none']['display_fps']:.1f} | " + " | ".join(cells) + " |")
    return rows
