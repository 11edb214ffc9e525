"""`gradcam-export`: a Keras CNN or any ONNX classifier -> Grad-CAM ONNX graph (argparse -> ExportConfig -> export)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from realtime import contract
from realtime.cpu import INT8_TARGETS
from realtime.export.int8.calibration import CALIBRATION_SOURCES
from realtime.export.int8.quantize import DEFAULT_SCOPE, SCOPES

GRADIENT_CHOICES = {
    contract.GRADIENTS_FULL: "logits, maps and the full d logit / dA (needed by Grad-CAM++, HiResCAM, ...)",
    contract.GRADIENTS_POOLED: "only the channel weights, from a 49x smaller pooled fc1 (cheapest Grad-CAM)",
    contract.GRADIENTS_NONE: "forward only: the baseline that benchmarks compare against",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcam-export",
        description="Export a Keras CNN (VGG16 by default) or any ONNX image classifier (--onnx) to an ONNX graph "
        "that returns Grad-CAM maps.",
    )
    parser.add_argument(
        "--onnx", type=Path, help="an ONNX image classifier (torch.onnx.export, timm, ...) instead of Keras"
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
    parser.add_argument(
        "--layer",
        action="append",
        help="what to explain: a Keras layer name, or an ONNX tensor name (see --list-layers); default: the last "
        "feature map before the head's pooling (block5_conv3 for VGG16). Repeat it to explain several layers "
        "from one run (the first is the default view)",
    )
    parser.add_argument(
        "--input-gradients",
        nargs="?",
        const="both",
        default="",
        choices=("saliency", "guided", "both"),
        help="also gradients at the input: saliency (plain), guided (guided backpropagation, for Guided "
        "Grad-CAM) or both (the default when the flag has no value)",
    )
    parser.add_argument("--list-layers", action="store_true", help="print the tensors --layer can name, and stop")
    parser.add_argument(
        "--layout", choices=("NCHW", "NHWC"), help="the ONNX model's input layout, if its shape is ambiguous"
    )
    parser.add_argument(
        "--input-size", type=_size, metavar="HxW", help="fix an ONNX input with dynamic height and width"
    )
    parser.add_argument(
        "--grid", type=_size, metavar="HxW",
        help="how a token layer's patch tokens lie, where the input's size does not tell (ViT, DeiT)",
    )  # fmt: skip
    parser.add_argument(
        "--prefix-tokens", type=_prefix, metavar="K",
        help="class / distillation tokens before a token layer's patch tokens (default: inferred, 0-2)",
    )  # fmt: skip
    parser.add_argument(
        "--output-name",
        metavar="NAME",
        help="the ONNX output that holds the logits (default: the one with a class axis)",
    )
    parser.add_argument("--labels", type=Path, help="class names, one per line (default: ImageNet for 1000 classes)")
    parser.add_argument(
        "--preprocess",
        choices=sorted(contract.PREPROCESSING_MODES),
        help="; ".join(f"{k}: {v}" for k, v in contract.PREPROCESSING_MODES.items())
        + " (default: caffe for Keras VGG16, torch for --onnx)",
    )
    parser.add_argument(
        "--mean",
        type=_triple,
        metavar="A,B,C",
        help="explicit per-channel mean, 0-255 scale, in the model's channel order",
    )
    parser.add_argument(
        "--std",
        type=_triple,
        metavar="A,B,C",
        help="explicit per-channel std, 0-255 scale (torch's ImageNet: 58.395,57.12,57.375)",
    )
    parser.add_argument(
        "--channels", choices=("rgb", "bgr"), default="rgb", help="channel order the model reads, with --mean/--std"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the self-check against finite differences")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights (static QDQ forward, dynamic backward products); maps stay fp32",
    )
    parser.add_argument(
        "--calibration",
        default=None,
        metavar="demo|random|DIR",
        help="; ".join(f"{k}: {v}" for k, v in CALIBRATION_SOURCES.items()),
    )
    parser.add_argument(
        "--int8-scope",
        choices=list(SCOPES),
        default=DEFAULT_SCOPE,
        help="; ".join(f"{k}: {v}" for k, v in SCOPES.items()),
    )
    parser.add_argument(
        "--int8-cpu",
        choices=("auto", *INT8_TARGETS),
        default="auto",
        help="the CPUs the int8 graph is made for; auto: this one. "
        + "; ".join(f"{k}: {v}" for k, v in INT8_TARGETS.items()),
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="an fp16 copy for GPUs (uint8 in, fp32 maps out; softmax and cam normalisation in fp32), "
        "checked against fp32 on demo scenes here",
    )
    parser.add_argument(
        "--trt8",
        action="store_true",
        help="the TensorRT 8 profile (JetPack 5/6): float32 image, int32 targets and classes, 8.5's operators",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--verbose", action="store_true", help="show third-party output too (TensorFlow's CUDA probe, the quantizer)"
    )
    return parser


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxW, e.g. 224x224") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: height and width must be positive")
    return height, width


def _triple(text: str) -> tuple[float, float, float]:
    try:
        a, b, c = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers, e.g. 123.675,116.28,103.53") from None
    return a, b, c


def _prefix(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a count of tokens, e.g. 1 (ViT) or 2 (distilled DeiT)")
    return int(text)


def list_layers(config: Any) -> int:
    """Print the tensors --layer can name for an ONNX model."""
    from realtime.export import targets
    from realtime.export.importers import ModelImportError
    from realtime.export.importers.onnx_file import load_onnx
    from realtime.export.tokens import TokenHint

    if config.onnx is None:
        print("gradcam-export: --list-layers reads an ONNX model; pass --onnx PATH", file=sys.stderr)
        return 2
    try:
        forward = load_onnx(config.onnx, config.layout, config.input_size, output_name=config.output_name)
        layers = targets.list_layers(forward, TokenHint(config.grid, config.prefix_tokens))
    except (ModelImportError, ValueError) as exc:
        print(f"gradcam-export: {exc}", file=sys.stderr)
        return 2
    for layer in layers:
        mark = "  (default)" if layer.default else ""
        grid = f"\t{layer.grid.describe()}" if layer.grid else ""
        print(f"{layer.name}\t{layer.op_type}\t{'x'.join(map(str, layer.dims))}{grid}{mark}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse(argv: Sequence[str] | None = None) -> tuple[Any, bool]:
    """The command line as a frozen ExportConfig, and whether --list-layers was asked for."""
    from realtime.export.config import ExportConfig

    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, value in (("--calibration", args.calibration), ("--int8-cpu", None if args.int8_cpu == "auto" else 1)):
        if value is not None and not args.int8:
            print(f"gradcam-export: {flag} chooses how the int8 graph is made: add --int8, or drop {flag}",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(2)
    config = ExportConfig(
        onnx=args.onnx,
        layout=args.layout,
        input_size=args.input_size,
        output_name=args.output_name,
        grid=args.grid,
        prefix_tokens=args.prefix_tokens,
        mean=args.mean,
        std=args.std,
        channels=args.channels,
        weights=args.weights,
        seed=args.seed,
        gradients=args.gradients,
        output=args.output,
        model=args.model,
        layer=args.layer[0] if args.layer else None,
        more_layers=tuple(args.layer[1:]) if args.layer else (),
        input_gradients=args.input_gradients,
        labels=args.labels,
        preprocessing=args.preprocess,
        self_check=not args.no_check,
        quiet=args.quiet,
        verbose=args.verbose,
        int8=args.int8,
        calibration=args.calibration or "demo",
        int8_scope=args.int8_scope,
        int8_cpu=args.int8_cpu,
        fp16=args.fp16,
        trt8=args.trt8,
    )
    return config, args.list_layers


def main(argv: Sequence[str] | None = None) -> int:
    config, listing = parse(argv)
    return list_layers(config) if listing else run(config)


def run(config: Any) -> int:
    """Export as `config` says; one line of result, or one line saying what went wrong (exit 2 or 3)."""
    from realtime.export.graph.writing import GraphWriteError
    from realtime.export.pipeline import ExportError, SelfCheckError, export

    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM unwinds like Ctrl-C: temp files go
    try:
        result = export(config)
    except KeyboardInterrupt:
        print("gradcam-export: interrupted; nothing was written", file=sys.stderr)
        return 130
    except (ExportError, GraphWriteError) as exc:
        print(f"gradcam-export: {exc}", file=sys.stderr)
        return 2
    except SelfCheckError as exc:
        print(f"gradcam-export: self-check failed, nothing written: {exc}", file=sys.stderr)
        return 3
    finally:
        signal.signal(signal.SIGTERM, previous)

    check = f"; self-check {result.check.describe()}" if result.check is not None else ""
    if result.fidelity is not None:
        from realtime.export.int8.calibration import describe

        kind = "fp16" if config.fp16 else "int8"
        check += f"; {kind} fidelity on this CPU: {describe(result.fidelity)}"
    if result.int8_target is not None:
        check += f"; int8 made for {result.int8_target} CPUs"
    if result.static_batch:
        check += "; batch 1 only (baked into the graph): the runtime feeds several sources one by one"
    print(
        f"wrote {result.output} in {result.seconds:.1f} s ({result.num_classes} classes, layer {result.layer}){check}"
    )
    if not config.quiet:
        print(f"stages: {result.describe_stages()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
