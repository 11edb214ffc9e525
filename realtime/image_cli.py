"""`gradcam-image`: the seed's one-shot result (one image in, the blended map out)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from realtime import arguments
from realtime.engines.providers import PROVIDER_CHAINS
from realtime.files import IMAGE_SUFFIXES, OutputPathError, check_output_file, write_image
from realtime.live.cli import fraction
from realtime.maps import methods
from realtime.sources.fitting import FIT_MODES
from realtime.view.caption import draw_hud
from realtime.view.hud import Hud
from realtime.view.overlay import DEFAULT_ALPHA, DEFAULT_STYLE, STYLES


@dataclass(frozen=True)
class ImageConfig:
    image: Path
    output: Path
    model: Path | None = None
    method: str = "gradcam"
    class_: str | None = None
    alpha: float = DEFAULT_ALPHA
    style: str = DEFAULT_STYLE
    providers: str = "cpu"
    fit: str = "squash"
    caption: bool = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradcam-image", description="Grad-CAM of one image, saved as a PNG.")
    parser.add_argument("image", type=Path)
    parser.add_argument("--output", type=Path, required=True, help="where to write the overlay (PNG or JPEG)")
    parser.add_argument("--model", type=Path, help="exported Grad-CAM ONNX (default: models/vgg16_gradcam_*.onnx)")
    parser.add_argument("--method", choices=list(methods.METHODS), default="gradcam")
    parser.add_argument("--class", dest="class_", metavar="ID|NAME", help="explain this class instead of the top-1")
    parser.add_argument("--alpha", type=fraction, default=DEFAULT_ALPHA, help="overlay opacity, 0 to 1")
    parser.add_argument("--style", choices=list(STYLES), default=DEFAULT_STYLE)
    parser.add_argument("--providers", choices=list(PROVIDER_CHAINS), default="cpu")
    parser.add_argument("--crop", dest="fit", choices=list(FIT_MODES), default="squash")
    parser.add_argument("--caption", action="store_true", help="add the class, method and top classes under the image")
    return parser


def run(config: ImageConfig) -> int:
    from realtime.api import GradCam
    from realtime.contract import ContractError
    from realtime.detections import Detections
    from realtime.engines.graph_file import ModelNotFoundError
    from realtime.live.start import default_model
    from realtime.maps.query import ClassNameError
    from realtime.sources.frame import BadFrameError, to_bgr

    try:
        check_output_file(config.output, "--output", IMAGE_SUFFIXES)  # before any inference
        arguments.not_an_input(config.output, {"input image": config.image, "model": config.model})
    except (OutputPathError, ValueError) as exc:
        print(f"gradcam-image: {exc}", file=sys.stderr)
        return 2
    try:
        raw = cv2.imread(str(config.image), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise BadFrameError(f"cannot read image {config.image}")
        frame = to_bgr(raw)
        explainer = GradCam(config.model or default_model(), config.providers, fit_mode=config.fit, warmup=0)
        explained = explainer(frame, config.method, target=config.class_)
    except (BadFrameError, ModelNotFoundError, ContractError, ClassNameError, methods.MethodNeedsGradientsError) as exc:
        print(f"gradcam-image: {exc}", file=sys.stderr)
        return 2
    if isinstance(explained, Detections):  # a detector: the best box's map, every box drawn
        image = explained.overlay(frame, 0, config.alpha, config.style)
        found = [f"{d.label} {d.score * 100:.0f}%" for d in explained.boxes]
        best = explained.boxes[0] if explained.boxes else None
        hud = Hud(best.label if best else "no box above the threshold", best.score if best else None, config.method,
                  [(d.label, d.score) for d in explained.boxes[:3]])  # fmt: skip
        summary = f"{len(found)} boxes: {', '.join(found) or 'none'} [{config.method}]"
    else:
        image = explained.overlay(frame, config.alpha, config.style)
        hud = Hud(explained.labels[0], explained.probabilities[0], config.method,
                  [(n, p) for _, n, p in explained.top[:3]])  # fmt: skip
        summary = f"{explained.labels[0]} {explained.probabilities[0] * 100:.1f}% [{config.method}]"
    if config.caption:
        image = draw_hud(image, hud)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    if not write_image(config.output, image):
        print(f"gradcam-image: cannot write {config.output} (use a .png or .jpg name)", file=sys.stderr)
        return 2
    print(f"{summary} -> {config.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(ImageConfig(**vars(args)))


if __name__ == "__main__":
    sys.exit(main())
