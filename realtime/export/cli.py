"""`gradcam-export`: Keras model -> Grad-CAM ONNX graph (argparse -> ExportConfig -> export)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from realtime import contract
from realtime.export.quantize import CALIBRATION_SOURCES, DEFAULT_SCOPE, SCOPES

GRADIENT_CHOICES = {
    contract.GRADIENTS_FULL: "logits, maps and the full d logit / dA (needed by Grad-CAM++, HiResCAM, ...)",
    contract.GRADIENTS_POOLED: "only the channel weights, from a 49x smaller pooled fc1 (cheapest Grad-CAM)",
    contract.GRADIENTS_NONE: "forward only: the baseline that benchmarks compare against",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcam-export",
        description="Export a Keras CNN (VGG16 by default) to an ONNX graph that returns Grad-CAM maps.",
    )
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (Keras download), random (seeded, offline), or PATH to .h5/.weights.h5/.keras",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --weights random")
    parser.add_argument(
        "--gradients",
        choices=sorted(GRADIENT_CHOICES),
        default=contract.GRADIENTS_FULL,
        help="; ".join(f"{k}: {v}" for k, v in GRADIENT_CHOICES.items()),
    )
    parser.add_argument(
        "--output", type=Path, help="where to write the .onnx (default: models/<name>_gradcam_<gradients>.onnx)"
    )
    parser.add_argument("--model", type=Path, help="another Keras CNN saved as .keras (default: VGG16)")
    parser.add_argument("--layer", help="the conv layer to explain (default block5_conv3 for VGG16)")
    parser.add_argument("--labels", type=Path, help="class names, one per line (default: ImageNet for 1000 classes)")
    parser.add_argument(
        "--preprocess",
        choices=sorted(contract.PREPROCESSING_MODES),
        default="caffe",
        help="; ".join(f"{k}: {v}" for k, v in contract.PREPROCESSING_MODES.items()),
    )
    parser.add_argument("--no-check", action="store_true", help="skip the self-check against TF GradientTape")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights (static QDQ forward, dynamic backward products); maps stay fp32",
    )
    parser.add_argument(
        "--calibration",
        default="demo",
        metavar="demo|random|DIR",
        help="; ".join(f"{k}: {v}" for k, v in CALIBRATION_SOURCES.items()),
    )
    parser.add_argument(
        "--int8-scope",
        choices=list(SCOPES),
        default=DEFAULT_SCOPE,
        help="; ".join(f"{k}: {v}" for k, v in SCOPES.items()),
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from realtime.export.convert import SelfCheckError
    from realtime.export.exporter import ExportConfig, ExportError, export

    config = ExportConfig(
        weights=args.weights,
        seed=args.seed,
        gradients=args.gradients,
        output=args.output,
        model=args.model,
        layer=args.layer,
        labels=args.labels,
        preprocessing=args.preprocess,
        self_check=not args.no_check,
        quiet=args.quiet,
        int8=args.int8,
        calibration=args.calibration,
        int8_scope=args.int8_scope,
    )
    try:
        result = export(config)
    except ExportError as exc:
        print(f"gradcam-export: {exc}", file=sys.stderr)
        return 2
    except SelfCheckError as exc:
        print(f"gradcam-export: self-check failed, nothing written: {exc}", file=sys.stderr)
        return 3

    check = f"; self-check {result.check}" if result.check is not None else ""
    if result.fidelity is not None:
        check += f"; int8 fidelity {result.fidelity}"
    print(
        f"wrote {result.output} in {result.seconds:.1f} s ({result.num_classes} classes, layer {result.layer}){check}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
