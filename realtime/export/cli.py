"""`gradcam-export`: a Keras CNN or any ONNX classifier -> Grad-CAM ONNX graph (argparse -> ExportConfig -> export)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from realtime.export.cli_args import build_parser


def list_layers(config: Any) -> int:
    """Print the tensors --layer can name for an ONNX model."""
    from realtime.export import targets
    from realtime.export.importers import ModelImportError
    from realtime.export.importers.onnx_file import load_onnx
    from realtime.export.targets.tokens import TokenHint

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


def _triton(config: Any, graph: Path) -> Path | None:
    """The Triton repository `--triton-repo` asks for, from the graph just written."""
    if config.triton_repo is None:
        return None
    from realtime.export.pipeline import ExportError
    from realtime.export.triton.repository import TritonOptions, TritonRepoError, write_repository

    options = TritonOptions(device="cpu" if config.int8 else "gpu", tensorrt=config.triton_tensorrt)
    try:
        return write_repository(graph, config.triton_repo, options=options)
    except (TritonRepoError, OSError) as exc:
        raise ExportError(f"the graph {graph} is written, but not its Triton repository: {exc}") from exc


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
        triton_repo=args.triton_repo,
        triton_tensorrt=args.triton_tensorrt,
        conf=args.conf,
        iou=args.iou,
        max_boxes=args.max_boxes,
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
        repository = _triton(config, result.output)
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
        from realtime.export.variants.int8.calibration import describe

        kind = "fp16" if config.fp16 else "int8"
        check += f"; {kind} fidelity on this CPU: {describe(result.fidelity)}"
    if result.int8_target is not None:
        check += f"; int8 made for {result.int8_target} CPUs"
    if repository is not None:
        check += f"; Triton repository {repository} (config.pbtxt parsed by Triton's ModelConfig)"
    if result.static_batch:
        check += "; batch 1 only (baked into the graph): the runtime feeds several sources one by one"
    what = f"{result.num_classes} classes, {_explained(result.layer)}"
    print(f"wrote {result.output} in {result.seconds:.1f} s ({what}){check}")
    if not config.quiet:
        print(f"stages: {result.describe_stages()}", file=sys.stderr)
    return 0


def _explained(layer: str) -> str:
    return layer if "head inputs" in layer else f"layer {layer}"


if __name__ == "__main__":
    sys.exit(main())
