"""`gradcam-live`: argparse -> frozen LiveConfig -> run(config)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from realtime import __version__, arguments
from realtime.contract import MAX_TARGETS
from realtime.demo.models import DEMOS
from realtime.engines.opening import model_location
from realtime.engines.providers import PROVIDER_CHAINS
from realtime.files import VIDEO_SUFFIXES, OutputPathError, check_output_file, check_output_folder
from realtime.live.start import DISPLAY_MODES, LiveConfig, SessionResult
from realtime.maps import methods
from realtime.maps.methods import SMOOTH_MAX
from realtime.maps.query import ClassNameError
from realtime.outputs.controls import KEYS
from realtime.outputs.screen import parse_window_size
from realtime.sources.camera_mode import CameraMode, parse_fourcc, parse_size
from realtime.sources.fitting import FIT_MODES
from realtime.view.overlay import DEFAULT_ALPHA, DEFAULT_STYLE, STYLES
from realtime.view.panels import panel_names


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


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    keys = "; ".join(f"{k}: {v}" for k, v in KEYS.items())
    parser = argparse.ArgumentParser(
        prog="gradcam-live",
        description="Live Grad-CAM over cameras, files or the demo; several models and sources side by side.",
        epilog=f"keys: {keys}",
    )
    add = parser.add_argument
    add(
        "--source",
        dest="sources",
        action="append",
        metavar="SOURCE",
        help="camera index, video file, image folder, URL or GStreamer pipeline; repeat for a mosaic (default 0)",
    )
    add(
        "--model",
        dest="models",
        action="append",
        type=model_location,
        metavar="ONNX",
        help="exported Grad-CAM graph, or one Triton serves (grpc://HOST:8001/NAME, http://HOST:8000/NAME); "
        "repeat to compare models side by side (default: models/vgg16_gradcam_*.onnx)",
    )
    add(
        "--demo", nargs="?", const="classifiers", default="", choices=DEMOS,
        help="offline demo: the synthetic scene and a bundled pair, biased and fair: the classifiers (the default) "
        "or the detectors (--demo detectors)",
    )  # fmt: skip
    add("--method", choices=list(methods.METHODS), help="default: gradcam for classifiers, layercam for detectors")
    add("--layer", help="the explained layer to show first, by name or index (graphs exported with several --layer)")
    add("--class", dest="class_", metavar="ID|NAME", help="explain this class (by name: in every model's labels)")
    add(
        "--top-k",
        type=arguments.argparse_type(arguments.top_k, "--top-k"),
        default=1,
        help=f"show the maps of the top K classes side by side (1 to {MAX_TARGETS})",
    )
    add("--smooth", type=smoothing, default=0.0, help=f"temporal EMA of the map, 0 (off) .. {SMOOTH_MAX}")
    add("--alpha", type=fraction, default=DEFAULT_ALPHA, help="map opacity over the frame")
    add(
        "--style",
        choices=list(STYLES),
        default=DEFAULT_STYLE,
        help="; ".join(f"{k}: {v}" for k, v in STYLES.items()),
    )
    add("--providers", choices=list(PROVIDER_CHAINS), default="auto")
    add("--fp16", action="store_true", help="fp16 TensorRT engines (GPU only)")
    add(
        "--cuda-graph",
        action="store_true",
        help="CUDA: replay each frame as a CUDA graph (fixed-shape copies, buffers bound once); one line if not",
    )
    add(
        "--no-tf32",
        dest="tf32",
        action="store_false",
        help="CUDA: plain fp32 maths, maps equal to the CPU's (TF32 is twice as fast; maps differ by ~2e-4)",
    )
    add(
        "--threads",
        type=arguments.argparse_type(arguments.threads, "--threads"),
        help="CPU threads for onnxruntime (default: all cores)",
    )
    add("--crop", dest="fit", choices=list(FIT_MODES), default="squash", help="how frames fit the model")
    add("--record", type=Path, help="write the shown video here (.webm plays in browsers; .mp4, .avi)")
    add("--snapshots", type=Path, default=Path("snapshots"), help="folder for the s key's PNGs")
    add("--no-window", dest="window", action="store_false", help="run headless")
    add("--max-frames", type=positive, help="stop after N displayed frames")
    add("--serve", metavar="[HOST:]PORT", help="browser view (binds 127.0.0.1 unless HOST is given)")
    add("--max-clients", type=positive, default=4, help="browser streams at once (default 4)")
    add("--token", help="browser view: clients other than this machine must open /?token=TOKEN")
    add(
        "--display",
        choices=list(DISPLAY_MODES),
        default="auto",
        help="; ".join(f"{k}: {v}" for k, v in DISPLAY_MODES.items()),
    )
    add("--no-warp", dest="warp", action="store_false", help="camera rate without flow (stale maps)")
    add("--save-frames", type=Path, metavar="DIR", help="keep every 15th camera frame here, for int8 calibration")
    presenting = parser.add_argument_group("presenting")
    more = presenting.add_argument
    more("--list-cameras", action="store_true", help="list the cameras, their --source index and modes, and exit")
    more("--camera-size", type=_parsed(parse_size), metavar="WxH", help="ask the camera for this size (1280x720)")
    more("--camera-fps", type=_positive_float, metavar="N", help="ask the camera for this frame rate")
    more(
        "--fourcc",
        type=_parsed(parse_fourcc),
        metavar="CODE",
        help="camera pixel format: MJPG (720p30 on most webcams), YUYV, ...",
    )
    more(
        "--mirror",
        action="store_true",
        help="mirror the view, as a mirror would (key v); the model then sees the mirrored frame, which is a "
        "different input for a model trained on unmirrored images",
    )
    more("--fullscreen", action="store_true", help="start the window full screen (key f)")
    more(
        "--window-size",
        type=_parsed(parse_window_size),
        metavar="WxH",
        help="the window's first size in pixels (default: about 80%% of the screen's smaller side, the picture's "
        "aspect kept; it stays resizable)",
    )
    add("--version", action="version", version=f"gradcam-live {__version__}")
    return parser  # fmt: skip


def _parsed(parse: Callable[[str], object]) -> Callable[[str], object]:
    """A camera.py parser as an argparse type: its ValueError becomes argparse's one-line refusal."""

    def parse_text(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse_text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} must be a frame rate above 0, up to 1000")
    return value


def parse_config(argv: Sequence[str] | None = None) -> LiveConfig:
    args = vars(build_parser().parse_args(argv))
    args["sources"] = tuple(args["sources"] or ())
    args["models"] = tuple(args["models"] or ())
    args["camera"] = CameraMode(args.pop("camera_size"), args.pop("camera_fps"), args.pop("fourcc"))
    return LiveConfig(**args)


def report(result: SessionResult) -> None:
    summary, stats = result.summary, result.summary.stats
    names = panel_names(result.engines)
    each = ", ".join(f"{name} {ms:.1f} ms" for name, ms in zip(names, stats.engine_ms, strict=False))
    print(
        f"{summary.displayed} frames shown ({summary.end_reason}); {stats.display_fps:.1f} FPS, "
        f"model {stats.model_ms:.1f} ms ({each}), latency {stats.latency_ms:.1f} ms on {result.engines[0].provider}",
        file=sys.stderr,
    )
    if result.record:
        print(f"video written to {result.record.resolve()}", file=sys.stderr)


def check_outputs(config: LiveConfig) -> None:
    """Every path gradcam-live will write, and options that mean nothing alone, checked before anything slow."""
    if config.token is not None and not config.serve:
        raise OutputPathError("--token guards the browser view: give --serve [HOST:]PORT too, or drop --token")
    if config.record is not None:
        check_output_file(config.record, "--record", VIDEO_SUFFIXES)
    check_output_folder(config.snapshots, "--snapshots")
    if config.save_frames is not None:
        check_output_folder(config.save_frames, "--save-frames")


def run(config: LiveConfig) -> int:
    """Build the session, run it, report."""
    from realtime.contract import ContractError
    from realtime.demo.models import DemoModelsMissingError
    from realtime.engines.graph_file import ModelNotFoundError
    from realtime.engines.remote import RemoteModelError
    from realtime.live.start import SessionError, run_session
    from realtime.sources.kinds import SourceError

    if config.list_cameras:
        from realtime.sources.camera_listing import describe, list_cameras

        print("\n".join(describe(*list_cameras())))
        return 0
    try:
        check_outputs(config)  # in the first second, not after loading a model or at the first frame
        result = run_session(config)
    except (
        OutputPathError,
        ModelNotFoundError,
        DemoModelsMissingError,
        ContractError,
        SourceError,
        SessionError,
        ClassNameError,
        methods.MethodNeedsGradientsError,
        RemoteModelError,  # a served model's server unreachable, or gone mid-run
    ) as exc:
        print(f"gradcam-live: {exc}", file=sys.stderr)
        return 2
    if result.summary.displayed == 0:  # a folder of unreadable files, a stream that never sent a frame
        print(f"gradcam-live: no frame was shown ({result.summary.end_reason})", file=sys.stderr)
        return 1
    report(result)
    return 0 if not result.summary.end_reason.startswith(("capture failed", "camera")) else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_config(argv))


if __name__ == "__main__":
    sys.exit(main())
