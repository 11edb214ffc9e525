"""Pictures for the README and the docs, made by the project itself from the bundled demo models.

    python scripts/make_figures.py                       # every figure, into docs/images
    python scripts/make_figures.py --only stale_vs_warped --output /tmp/figures

Figures: demo.png, styles.png, side_by_side.png, layers.png (trains a model: about a minute),
stale_vs_warped.gif. Each is written through the verified writer: a disk that cannot hold it keeps the
previous file, and the script says so in one line (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from realtime.demo.models import demo_model_paths
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.files import discard, finish, partial_path, write_image
from realtime.live.loop import Loop
from realtime.maps.explain import maps_for
from realtime.maps.query import Query
from realtime.outputs.base import Output, Shown
from realtime.outputs.controls import Controls
from realtime.sources import scenes
from realtime.sources.demo import DemoScene, DemoSource, Timeline
from realtime.sources.fitting import model_region
from realtime.sources.group import SourceSet
from realtime.timing import Stats
from realtime.view.look import Look
from realtime.view.mosaic import SourceRow, mosaic
from realtime.view.overlay import DEFAULT_STYLE, STYLES, blend
from realtime.view.panels import ModelColumn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT))  # scripts.train_demo_models when run as `python scripts/make_figures.py`


def demo_still(index: int, engines: list[LocalEngine], scene: DemoScene, style: str = DEFAULT_STYLE) -> np.ndarray:
    """One demo frame explained by every model, drawn by the live view's own mosaic."""
    frame = scene.frame(index)
    size = (engines[0].info.input_height, engines[0].info.input_width)
    model_input = cv2.resize(frame.image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    query = Query()
    results = [e.run(model_input[None], [[-1]]) for e in engines]
    region = model_region(frame.image.shape, size, "squash")
    names = [e.info.model_name if len(engines) > 1 else None for e in engines]
    columns = [ModelColumn(result, name, None) for result, name in zip(results, names, strict=True)]
    maps = tuple(maps_for(result, 0, query, None) for result in results)
    row = SourceRow("demo", frame.image, 0, maps, (region,) * len(results))
    image, _ = mosaic([row], columns, query, Look(style=style), Stats())
    return image


class Keep(Output):
    """Keeps the last presented frame."""

    last: Shown | None = None

    def write(self, shown: Shown) -> None:
        self.last = shown


def live_mosaic(engines: list[LocalEngine], frames: int) -> np.ndarray:
    """gradcam-live's own picture: two models (columns) on two cameras (rows), one batch per model."""
    savanna, snow = Timeline(background_frames=10_000), Timeline(background_frames=10_000, crossing_frames=90)
    keep = Keep()
    sources = [DemoSource(savanna, paced=False), DemoSource(snow, paced=False)]
    sources[1].scene.backgrounds.reverse()  # the second camera looks at the snow scene
    with SourceSet(sources) as both:
        Loop(engines, both, Controls(), [keep]).run(frames)
    assert keep.last is not None
    return keep.last.image


def stale_vs_warped(engine: LocalEngine, scene: DemoScene, start: int, frames: int, every: int) -> list[np.ndarray]:
    """Camera-rate frames with a model update every `every` frames: stale map left, warped map right."""
    from realtime.maps.flow import MapCarrier, embed

    size = (engine.info.input_height, engine.info.input_width)
    carriers = [MapCarrier(warp_maps=False), MapCarrier(warp_maps=True)]
    out = []
    for i in range(start, start + frames):
        shot = scene.frame(i)
        if (i - start) % every == 0:
            model_input = cv2.resize(shot.image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            cam = maps_for(engine.run(model_input[None], [[shot.label]]), 0, Query(), None)
            h, w = shot.image.shape[:2]
            full = np.stack([embed(m, (0, 0, w, h), shot.image.shape, (240, 320)) for m in cam])
            for carrier in carriers:
                carrier.update(shot.image, i, [full])
        panels = []
        for carrier, name in zip(carriers, ("stale map", "warped by optical flow"), strict=True):
            panel = blend(shot.image, carrier.carry(shot.image, i)[0][0], 0.45, style="tint")
            cv2.putText(
                panel,
                f"{name}  (map age {i - carrier.index})",
                (12, 34),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.9,
                (255, 255, 255),
                2,
                cv2.LINE_AA,
            )
            panels.append(panel)
        out.append(np.concatenate(panels, axis=1))
    return out


LAYER_VIEWS = (  # (caption, method, layer index) of the layers figure
    ("Grad-CAM at last_conv (28x28)", "gradcam", 0),
    ("Grad-CAM at block2_conv (56x56)", "gradcam", 1),
    ("LayerCAM fused over 3 layers", "layercam-fusion", 0),
    ("Guided Grad-CAM (224x224)", "guided-gradcam", 0),
)


def layers_figure(scene: DemoScene, index: int) -> np.ndarray:
    """One frame explained at two layers, by LayerCAM's fusion and by Guided Grad-CAM, with a fair model
    trained here by the demo's own recipe and exported with three layers and input gradients."""
    import tempfile

    from realtime import GradCam
    from scripts.train_demo_models import LAYER, train

    with tempfile.TemporaryDirectory() as tmp:
        layers = (LAYER, "block2_conv", "block1_conv")
        path = train("fair_layers", False, 7, 2000, 4, None, Path(tmp), layers=layers, input_gradients="both")
        explainer = GradCam(path, providers="cpu")
        frame = scene.frame(index).image
        panels = []
        for caption, method, layer in LAYER_VIEWS:
            result = explainer(frame, method=method, layer=layer, target="elephant")
            panel = result.overlay(frame, alpha=0.5)
            cv2.putText(panel, caption, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
            panels.append(panel)
    grid = np.concatenate([np.concatenate(panels[:2], axis=1), np.concatenate(panels[2:], axis=1)], axis=0)
    return cv2.resize(grid, (grid.shape[1] // 2, grid.shape[0] // 2), interpolation=cv2.INTER_AREA)


def write_gif(frames: list[np.ndarray], path: Path, width: int, fps: float) -> None:
    from PIL import Image

    scale = width / frames[0].shape[1]
    images = [
        Image.fromarray(
            cv2.cvtColor(cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        ).quantize(colors=96)
        for f in frames
    ]
    partial = partial_path(path)  # written whole, read back, then moved into place
    try:
        frame_ms = int(1000 / fps)
        images[0].save(partial, save_all=True, append_images=images[1:], duration=frame_ms, loop=0, optimize=True)
        with Image.open(partial) as back:
            complete = getattr(back, "n_frames", 1) == len(images)
        if not complete:
            raise FigureError(f"cannot write {path}: the GIF read back has missing frames (is the disk full?)")
        finish(partial, path)
    except OSError as error:
        raise FigureError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        discard(partial)


class FigureError(RuntimeError):
    """A figure that could not be written and verified; the previous file is kept."""


def save(path: Path, image: np.ndarray, note: str = "") -> None:
    """Write one figure through the verified writer, or stop with one line."""
    if not write_image(path, image):
        raise FigureError(f"cannot write {path} (disk full, or the folder is not writable); the previous file is kept")
    print(f"wrote {path}{note}")


Figure = Callable[[list[LocalEngine], DemoScene, Path], None]


def demo_frames(scene: DemoScene) -> tuple[int, int]:
    """An elephant on savanna (as in the biased training set), then the same walk on snow."""
    matching = next(
        i for i in range(60, 400) if scene.frame(i).background == scenes.SAVANNA and scene.frame(i).label == 0
    )
    swapped = next(i for i in range(60, 400) if scene.frame(i).background == scenes.SNOW and scene.frame(i).label == 0)
    return matching, swapped


def halved(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)


def demo_figure(engines: list[LocalEngine], scene: DemoScene, out: Path) -> None:
    matching, swapped = demo_frames(scene)
    image = np.concatenate([demo_still(i, engines, scene) for i in (matching, swapped)], axis=0)
    save(out / "demo.png", halved(image), f" (frames {matching} and {swapped})")


def styles_figure(engines: list[LocalEngine], scene: DemoScene, out: Path) -> None:
    swapped = demo_frames(scene)[1]
    styles = np.concatenate([demo_still(swapped, engines[1:], scene, style) for style in STYLES], axis=1)
    save(out / "styles.png", halved(styles), f" ({', '.join(STYLES)})")


def side_by_side_figure(engines: list[LocalEngine], scene: DemoScene, out: Path) -> None:
    save(out / "side_by_side.png", halved(live_mosaic(engines, 40)))


def layers_figure_file(engines: list[LocalEngine], scene: DemoScene, out: Path) -> None:
    save(out / "layers.png", layers_figure(scene, demo_frames(scene)[1]))


def stale_vs_warped_figure(engines: list[LocalEngine], scene: DemoScene, out: Path) -> None:
    # a 3 FPS model on a 30 FPS camera (a small device): the penguin, the fastest walker
    clip = stale_vs_warped(engines[1], scene, 160, 60, every=10)
    write_gif(clip, out / "stale_vs_warped.gif", width=640, fps=15)
    print(f"wrote {out / 'stale_vs_warped.gif'}")


FIGURES: dict[str, Figure] = {
    "demo": demo_figure,
    "styles": styles_figure,
    "side_by_side": side_by_side_figure,
    "layers": layers_figure_file,
    "stale_vs_warped": stale_vs_warped_figure,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=OUT, help="folder for the figures (default docs/images)")
    parser.add_argument("--only", action="append", choices=list(FIGURES), help="make this figure only (repeat)")
    args = parser.parse_args(argv)
    paths = demo_model_paths()
    engines = [LocalEngine(paths[name], EngineOptions(providers="cpu", warmup=0)) for name in ("biased", "fair")]
    scene = DemoScene(Timeline())
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        for name in args.only or FIGURES:
            FIGURES[name](engines, scene, args.output)
    except (FigureError, OSError) as error:
        print(f"make_figures: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
