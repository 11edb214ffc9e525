"""`gradcam-live`: argparse -> frozen LiveConfig -> run(config)."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime import cam
from realtime.cam import SMOOTH_MAX
from realtime.camera_loop import DISPLAY_MODES
from realtime.engine import PROVIDER_CHAINS
from realtime.files import VIDEO_SUFFIXES, OutputPathError, check_output_file, check_output_folder
from realtime.frames import FIT_MODES
from realtime.pipeline import RunSummary

DEFAULT_MODELS = (Path("models/vgg16_gradcam_full.onnx"), Path("models/vgg16_gradcam_pooled.onnx"))


class ClassNameError(ValueError):
    """--class names no class of the model."""


@dataclass(frozen=True)
class LiveConfig:
    source: str = "0"
    model: Path | None = None
    method: str = "gradcam"
    class_: str | None = None
    top_k: int = 1
    smooth: float = 0.0
    alpha: float = 0.4
    providers: str = "auto"
    fp16: bool = False
    tf32: bool = True
    record: Path | None = None
    window: bool = True
    max_frames: int | None = None
    fit: str = "squash"
    snapshots: Path = Path("snapshots")
    demo: bool = False
    threads: int | None = None
    serve: str | None = None
    max_clients: int = 4
    token: str | None = None
    save_frames: Path | None = None
    display: str = "auto"
    warp: bool = True


def default_model() -> Path:
    """The first exported VGG16 graph that exists (full, then pooled)."""
    return next((p for p in DEFAULT_MODELS if p.exists()), DEFAULT_MODELS[0])


def resolve_class(value: str | None, labels: Sequence[str]) -> int | None:
    """--class as an id or a name (case and _/space insensitive)."""
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        class_id = int(value)
        if not 0 <= class_id < len(labels):
            raise ClassNameError(f"--class {value}: ids run from 0 to {len(labels) - 1}")
        return class_id
    norm = {label.lower().replace("_", " "): i for i, label in enumerate(labels)}
    key = value.lower().replace("_", " ")
    if key in norm:
        return norm[key]
    close = difflib.get_close_matches(key, list(norm), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ClassNameError(f"--class {value!r} is not a class of this model{hint}")


def fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def smoothing(text: str) -> float:
    """An argparse type for --smooth: 0 (off) up to 0.99; 1 would keep the first map for ever."""
    value = fraction(text)
    if value > SMOOTH_MAX:
        raise argparse.ArgumentTypeError(f"{text}: at most {SMOOTH_MAX} (1 would freeze the first map)")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradcam-live", description="Live Grad-CAM over a camera, file or demo.")
    parser.add_argument(
        "--source", default="0", help="camera index, video file, image folder, URL or GStreamer pipeline"
    )
    parser.add_argument("--demo", action="store_true", help="offline demo: synthetic scenes and the bundled models")
    parser.add_argument("--model", type=Path, help="exported Grad-CAM ONNX (default: models/vgg16_gradcam_*.onnx)")
    parser.add_argument("--method", choices=list(cam.METHODS), default="gradcam")
    parser.add_argument("--class", dest="class_", metavar="ID|NAME", help="explain this class instead of the top-1")
    parser.add_argument("--top-k", type=_positive, default=1, help="show the maps of the top K classes side by side")
    parser.add_argument(
        "--smooth", type=smoothing, default=0.0, help=f"temporal EMA of the map, 0 (off) .. {SMOOTH_MAX}"
    )
    parser.add_argument("--alpha", type=fraction, default=0.4, help="map opacity over the frame")
    parser.add_argument("--providers", choices=list(PROVIDER_CHAINS), default="auto")
    parser.add_argument("--fp16", action="store_true", help="fp16 TensorRT engines (GPU only)")
    parser.add_argument(
        "--no-tf32",
        dest="tf32",
        action="store_false",
        help="CUDA: plain fp32 maths, maps equal to the CPU's (TF32 is twice as fast; maps differ by ~2e-4)",
    )
    parser.add_argument("--threads", type=_positive, help="CPU threads for onnxruntime (default: all cores)")
    parser.add_argument(
        "--crop", dest="fit", choices=list(FIT_MODES), default="squash", help="how frames fit the model"
    )
    parser.add_argument("--record", type=Path, help="write the overlay video here (.mp4 or .avi)")
    parser.add_argument("--snapshots", type=Path, default=Path("snapshots"), help="folder for the s key's PNGs")
    parser.add_argument("--no-window", dest="window", action="store_false", help="run headless")
    parser.add_argument("--max-frames", type=_positive, help="stop after N displayed frames")
    parser.add_argument("--serve", metavar="[HOST:]PORT", help="browser view (binds 127.0.0.1 unless HOST is given)")
    parser.add_argument("--max-clients", type=_positive, default=4, help="browser streams at once (default 4)")
    parser.add_argument(
        "--token",
        help="browser view: clients other than this machine must open /?token=TOKEN (use it with a non-loopback HOST)",
    )
    parser.add_argument(
        "--display",
        choices=list(DISPLAY_MODES),
        default="auto",
        help="; ".join(f"{k}: {v}" for k, v in DISPLAY_MODES.items()),
    )
    parser.add_argument("--no-warp", dest="warp", action="store_false", help="camera rate without flow (stale maps)")
    parser.add_argument(
        "--save-frames", type=Path, metavar="DIR", help="keep every 15th camera frame here, for int8 calibration"
    )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> LiveConfig:
    args = build_parser().parse_args(argv)
    return LiveConfig(**vars(args))


def report(summary: RunSummary, provider: str, record: Path | None, prefix: str = "") -> None:
    stats = summary.stats
    print(
        f"{prefix}{summary.displayed} frames shown ({summary.end_reason}); {stats.display_fps:.1f} FPS, "
        f"model {stats.model_ms:.1f} ms, latency {stats.latency_ms:.1f} ms on {provider}",
        file=sys.stderr,
    )
    if record:
        print(f"{prefix}video written to {record.resolve()}", file=sys.stderr)


def session_outputs(config: LiveConfig, title: str | None, record: Path | None) -> Any:
    """The sinks a config asks for (a session.Outputs); the demo and the camera path build them alike."""
    from realtime.session import Outputs

    return Outputs(
        title,
        record,
        config.snapshots,
        config.serve,
        config.max_clients,
        token=config.token,
        save_frames=config.save_frames,
        display=config.display,
        warp=config.warp,
    )


def check_outputs(config: LiveConfig) -> None:
    """Every path gradcam-live will write, checked before anything slow."""
    if config.record is not None:
        check_output_file(config.record, "--record", VIDEO_SUFFIXES)
    check_output_folder(config.snapshots, "--snapshots")
    if config.save_frames is not None:
        check_output_folder(config.save_frames, "--save-frames")


def run(config: LiveConfig) -> int:
    """Open the model and the source, run the session, report."""
    from realtime.capture import SourceError, open_source
    from realtime.contract import ContractError
    from realtime.engine import Engine, EngineOptions, ModelNotFoundError
    from realtime.pipeline import Controls
    from realtime.session import SessionError, run_session

    try:
        check_outputs(config)  # in the first second, not after loading a model or at the first frame
    except OutputPathError as exc:
        print(f"gradcam-live: {exc}", file=sys.stderr)
        return 2
    if config.demo:
        from realtime.demo.live import run_demo

        return run_demo(config)
    try:
        engine = Engine(
            config.model or default_model(),
            EngineOptions(providers=config.providers, fp16=config.fp16, tf32=config.tf32, threads=config.threads),
        )
        print(engine.notice, file=sys.stderr)
        class_id = resolve_class(config.class_, engine.info.labels)
        if cam.METHODS[config.method].needs_gradients and not engine.has_gradients:
            raise cam.MethodNeedsGradientsError(
                f"--method {config.method} needs a model exported with --gradients full; {engine.path} is pooled"
            )
        top_k = min(config.top_k, engine.info.num_classes)
        controls = Controls(config.method, class_id, 0, top_k, config.alpha, config.smooth)
        source = open_source(config.source)
        outputs = session_outputs(config, "gradcam-live" if config.window else None, config.record)
        summary = run_session([engine], source, controls, outputs, config.fit, config.max_frames)
    except (
        ModelNotFoundError,
        ContractError,
        SourceError,
        SessionError,
        ClassNameError,
        cam.MethodNeedsGradientsError,
    ) as exc:
        print(f"gradcam-live: {exc}", file=sys.stderr)
        return 2
    report(summary, engine.provider, config.record)
    return 0 if not summary.end_reason.startswith(("capture failed", "camera")) else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_config(argv))


if __name__ == "__main__":
    sys.exit(main())
