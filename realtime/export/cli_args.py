"""`gradcam-export`'s command line: every flag, its type and its help (cli.py turns it into an ExportConfig)."""

from __future__ import annotations

import argparse
from pathlib import Path

from realtime import contract
from realtime.engines.int8_cpu import INT8_TARGETS
from realtime.export.variants.int8.calibration import CALIBRATION_SOURCES
from realtime.export.variants.int8.quantize import DEFAULT_SCOPE, SCOPES

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
    parser.add_argument(
        "--triton-repo",
        type=Path,
        metavar="DIR",
        help="also write a Triton model repository: DIR/NAME/config.pbtxt (onnxruntime backend, dynamic "
        "batching) and DIR/NAME/1/model.onnx",
    )
    parser.add_argument(
        "--triton-tensorrt", choices=("fp16", "fp32"), help="with --triton-repo: Triton's TensorRT accelerator"
    )
    detectors = parser.add_argument_group("detectors (a YOLOv8 / YOLO11 / YOLO26 file, found by its one output)")
    detectors.add_argument("--conf", type=_fraction, default=0.25, help="keep boxes scoring above this (default 0.25)")
    detectors.add_argument("--iou", type=_fraction, default=0.7, help="NMS drops boxes overlapping a better one more "
                           "than this (default 0.7)")  # fmt: skip
    detectors.add_argument(
        "--max-boxes", type=_boxes, default=contract.MAX_BOXES,
        help=f"boxes kept per image after NMS, at most {contract.MAX_BOXES} (default {contract.MAX_BOXES})",
    )  # fmt: skip
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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number from 0 to 1")
    return value


def _boxes(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= contract.MAX_BOXES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number from 1 to {contract.MAX_BOXES}")
    return int(text)


def _prefix(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a count of tokens, e.g. 1 (ViT) or 2 (distilled DeiT)")
    return int(text)
