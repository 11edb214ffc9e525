"""Pictures for the README, made by the project itself from the bundled demo models.

python scripts/make_figures.py        # writes docs/images/demo.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from realtime.demo import scenes
from realtime.demo.live import DemoScene, Timeline
from realtime.demo.models import demo_model_paths
from realtime.engine import Engine, EngineOptions
from realtime.frames import model_region
from realtime.pipeline import Controls, Stats, maps_for, render_comparison

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def demo_still(index: int, engines: list[Engine], scene: DemoScene) -> np.ndarray:
    frame = scene.frame(index)
    size = (engines[0].info.input_height, engines[0].info.input_width)
    model_input = cv2.resize(frame.image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    controls = Controls()
    results = [e.run(model_input[None], [[-1]]) for e in engines]
    maps = [maps_for(r, controls) for r in results]
    names = [e.info.model_name for e in engines]
    region = model_region(frame.image.shape, size, "squash")
    image, _ = render_comparison(frame.image, results, maps, names, controls, Stats(), region)
    return image


def main() -> int:
    paths = demo_model_paths()
    engines = [Engine(paths[name], EngineOptions(providers="cpu", warmup=0)) for name in ("biased", "fair")]
    timeline = Timeline()
    scene = DemoScene(timeline)
    # an elephant on savanna (as in the biased training set), then the same walk on snow
    matching = next(
        i for i in range(60, 400) if scene.frame(i).background == scenes.SAVANNA and scene.frame(i).label == 0
    )
    swapped = next(i for i in range(60, 400) if scene.frame(i).background == scenes.SNOW and scene.frame(i).label == 0)
    rows = [demo_still(i, engines, scene) for i in (matching, swapped)]
    image = np.concatenate(rows, axis=0)
    image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    OUT.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(OUT / "demo.png"), image)
    print(f"wrote {OUT / 'demo.png'} (frames {matching} and {swapped})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
