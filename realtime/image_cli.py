"""`gradcam-image`: the seed's one-shot result (one image in, the blended map out)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from realtime import cam
from realtime.cli import fraction
from realtime.engine import PROVIDER_CHAINS
from realtime.files import IMAGE_SUFFIXES, OutputPathError, check_output_file, write_image
from realtime.frames import FIT_MODES


@dataclass(frozen=True)
class ImageConfig:
    image: Path
    output: Path
    model: Path | None = None
    method: str = "gradcam"
    class_: str | None = None
    alpha: float = 0.4
    providers: str = "cpu"
    fit: str = "squash"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradcam-image", description="Grad-CAM of one image, saved as a PNG.")
    parser.add_argument("image", type=Path)
    parser.add_argument("--output", type=Path, required=True, help="where to write the overlay (PNG or JPEG)")
    parser.add_argument("--model", type=Path, help="exported Grad-CAM ONNX (default: models/vgg16_gradcam_*.onnx)")
    parser.add_argument("--method", choices=list(cam.METHODS), default="gradcam")
    parser.add_argument("--class", dest="class_", metavar="ID|NAME", help="explain this class instead of the top-1")
    parser.add_argument("--alpha", type=fraction, default=0.4, help="overlay opacity, 0 to 1 (default 0.4)")
    parser.add_argument("--providers", choices=list(PROVIDER_CHAINS), default="cpu")
    parser.add_argument("--crop", dest="fit", choices=list(FIT_MODES), default="squash")
    return parser


def run(config: ImageConfig) -> int:
    from realtime.cli import ClassNameError, default_model, resolve_class
    from realtime.contract import ContractError
    from realtime.engine import Engine, EngineOptions, ModelNotFoundError
    from realtime.frames import BadFrameError, fit, model_region, to_bgr
    from realtime.pipeline import Controls, Stats, maps_for, render, targets_for

    try:
        check_output_file(config.output, "--output", IMAGE_SUFFIXES)  # before any inference
    except OutputPathError as exc:
        print(f"gradcam-image: {exc}", file=sys.stderr)
        return 2
    try:
        raw = cv2.imread(str(config.image), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise BadFrameError(f"cannot read image {config.image}")
        frame = to_bgr(raw)
        engine = Engine(config.model or default_model(), EngineOptions(providers=config.providers, warmup=0))
        controls = Controls(config.method, resolve_class(config.class_, engine.info.labels), alpha=config.alpha)
        size = (engine.info.input_height, engine.info.input_width)
        result = engine.run(fit(frame, size, config.fit)[None], [targets_for(controls)])
        maps = maps_for(result, controls)
    except (BadFrameError, ModelNotFoundError, ContractError, ClassNameError, cam.MethodNeedsGradientsError) as exc:
        print(f"gradcam-image: {exc}", file=sys.stderr)
        return 2
    image, hud = render(frame, result, maps, controls, Stats(), model_region(frame.shape, size, config.fit))
    config.output.parent.mkdir(parents=True, exist_ok=True)
    if not write_image(config.output, image):
        print(f"gradcam-image: cannot write {config.output} (use a .png or .jpg name)", file=sys.stderr)
        return 2
    print(f"{hud.label} {hud.probability * 100:.1f}% [{hud.method}] -> {config.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(ImageConfig(**vars(args)))


if __name__ == "__main__":
    sys.exit(main())
