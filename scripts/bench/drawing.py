"""Flow's tracking on the demo, and what drawing costs outside the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from realtime.view.caption import draw_hud
from realtime.view.hud import Hud
from realtime.view.overlay import DEFAULT_STYLE, STYLES, blend
from scripts.bench.timing import alternate

TRACKING_CLIPS = {"walk": 150, "run": 30}  # frames an animal takes to cross: the demo's 5 s, and 1 s


def tracking(model_rates: Sequence[int]) -> dict[str, Any]:
    """Map centroid against animal centroid on the demo between model updates, stale against warped.

    Two clips: the demo as it plays (animals walk across in 5 s: 54-105 px/s at 640x480) and the
    same scenes with animals running across in 1 s (270-520 px/s).
    """
    from realtime.demo.models import demo_model_paths
    from realtime.demo.tracking import track
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions
    from realtime.sources.demo import DemoScene, Timeline

    engine = LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu"))
    report: dict[str, Any] = {}
    for clip, crossing in TRACKING_CLIPS.items():
        scene = DemoScene(Timeline(crossing_frames=crossing))
        starts, length = range(0, 4 * crossing, max(crossing, 120)), max(crossing, 120)
        for rate in model_rates:
            every = round(30 / rate)
            runs = [track(engine, scene, start, length, every) for start in starts]
            stale, warped = np.mean([r.stale_px for r in runs]), np.mean([r.warped_px for r in runs])
            stale_t = np.mean([r.stale_tracking_px for r in runs])
            warped_t = np.mean([r.warped_tracking_px for r in runs])
            report[f"{clip} {rate} FPS"] = {
                "frames": int(sum(r.frames for r in runs)),
                "raw_stale_px": float(stale),
                "raw_warped_px": float(warped),
                "raw_ratio": float(warped / stale),
                "tracking_stale_px": float(stale_t),
                "tracking_warped_px": float(warped_t),
                "tracking_ratio": float(warped_t / stale_t),
            }
    static = track(engine, DemoScene(), 40, 60, 6, static=True)
    report["static"] = {"raw_stale_px": static.stale_px, "raw_warped_px": static.warped_px}
    return report


def drawing_scale(sizes: Sequence[tuple[int, int]], rounds: int) -> dict[str, Any]:
    """Per-frame cost outside the model (resize in, CAM normalise, colormap+blend in each style, caption)."""
    from realtime.maps import methods
    from realtime.sources.fitting import fit

    rng = np.random.default_rng(0)
    raw = rng.random((1, 14, 14)).astype(np.float32)
    hud = Hud("tabby", 0.61, "gradcam", [("tabby", 0.61), ("lynx", 0.2)], 7.0, 140.0, 150.0)
    report = {}
    for width, height in sizes:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        runs = {
            "resize": lambda f=frame: fit(f, (224, 224)),
            "cam": lambda: methods.normalise(raw),
            **{f"blend_{s}": (lambda f=frame, s=s: blend(f, raw[0], style=s)) for s in STYLES},
            "hud": lambda f=frame: draw_hud(f, hud),
        }
        ms = alternate(runs, rounds)
        total = ms["resize"] + ms["cam"] + ms[f"blend_{DEFAULT_STYLE}"] + ms["hud"]
        report[f"{width}x{height}"] = {**ms, "total": total}
    return report
