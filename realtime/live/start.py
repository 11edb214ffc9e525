"""One way to build a live session from a LiveConfig: models, sources, controls, outputs, loop.

`gradcam-live` and `gradcam-live --demo` both run here; the demo only changes the defaults
(the bundled biased and fair models, the synthetic scene, a video when there is no display).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from realtime.contract import TASK_DETECT
from realtime.engines.opening import open_engine
from realtime.engines.protocol import Engine
from realtime.engines.providers import EngineOptions
from realtime.live.loop import Loop, RunSummary
from realtime.live.signals import stop_on_signals
from realtime.maps import methods
from realtime.maps.query import Query, resolve_class
from realtime.outputs.base import Output, SinkError
from realtime.outputs.controls import Controls
from realtime.outputs.recording import Recorder
from realtime.outputs.stills import FrameSaver, Snapshots
from realtime.outputs.window import Window, has_display
from realtime.sources.camera_mode import CameraMode
from realtime.sources.group import SourceSet
from realtime.sources.kinds import FolderSource, FrameSource, open_source
from realtime.view.look import Look
from realtime.view.overlay import DEFAULT_ALPHA, DEFAULT_STYLE
from realtime.view.panels import panel_names

DEFAULT_MODELS = (Path("models/vgg16_gradcam_full.onnx"), Path("models/vgg16_gradcam_pooled.onnx"))
DEFAULT_DEMO_VIDEO = Path("gradcam_demo.webm")  # VP8: plays in any browser
DEMO_HEADLESS_FRAMES = 240
DISPLAY_MODES = {
    "auto": "camera when the model is slower than the source, else model",
    "camera": "every camera frame, the newest map carried to it by optical flow",
    "model": "one displayed frame per model result (no flow)",
}


@dataclass(frozen=True)
class LiveConfig:
    """Everything gradcam-live was asked for; every field works with and without --demo."""

    sources: tuple[str, ...] = ()  # empty: camera 0 (the demo scene with --demo)
    models: tuple[Path | str, ...] = ()  # empty: the exported VGG16 (the pair with --demo); str: a served model
    demo: str = ""  # "": no demo; classifiers or detectors: the demo scene and that pair of bundled models
    method: str | None = None  # None: each kind's own (Grad-CAM for classifiers, LayerCAM for detectors)
    layer: str | None = None  # which explained layer to show first: its name or index (version 2 graphs)
    class_: str | None = None
    top_k: int = 1
    smooth: float = 0.0
    alpha: float = DEFAULT_ALPHA
    style: str = DEFAULT_STYLE
    providers: str = "auto"
    fp16: bool = False
    tf32: bool = True
    cuda_graph: bool = False
    threads: int | None = None
    fit: str = "squash"
    record: Path | None = None
    snapshots: Path = Path("snapshots")
    window: bool = True
    max_frames: int | None = None
    serve: str | None = None
    max_clients: int = 4
    token: str | None = None
    save_frames: Path | None = None
    display: str = "auto"
    warp: bool = True
    camera: CameraMode = field(default_factory=CameraMode)  # --camera-size, --camera-fps, --fourcc
    mirror: bool = False
    fullscreen: bool = False
    window_size: tuple[int, int] | None = None  # (width, height); None: about 80% of the screen
    list_cameras: bool = False


class SessionError(RuntimeError):
    """A session cannot start; the message says what to do."""


def choose_display(mode: str, model_ms: float, source_fps: float) -> str:
    """Resolve `auto`: camera-rate display pays off only when the model is the slower of the two."""
    if mode not in DISPLAY_MODES:
        raise ValueError(f"--display {mode!r}: choose one of {', '.join(DISPLAY_MODES)}")
    if mode != "auto":
        return mode
    return "camera" if source_fps > 0 and model_ms > 1000.0 / source_fps else "model"


def record_rate(display: str, model_ms: float, source_fps: float) -> float:
    """The rate a recording plays back at: the source's at camera rate, the model's at model rate.

    At model rate a frame is shown per result, so the video runs at 1000 / model ms (the warm-up's
    measure), never faster than the source; a folder or a still image has no rate of its own.
    """
    model_fps = 1000.0 / model_ms if model_ms > 0 else 0.0
    if display == "camera" and source_fps > 0:
        return source_fps
    rates = [r for r in (model_fps, source_fps) if r > 0]
    return max(1.0, min(rates)) if rates else 15.0


def default_model() -> Path:
    """The first exported VGG16 graph that exists (full, then pooled)."""
    return next((p for p in DEFAULT_MODELS if p.exists()), DEFAULT_MODELS[0])


def load_engines(config: LiveConfig) -> list[Engine]:
    options = EngineOptions(
        providers=config.providers, fp16=config.fp16, tf32=config.tf32, threads=config.threads,
        cuda_graph=config.cuda_graph,
    )  # fmt: skip
    paths: Sequence[Path | str] = config.models
    if not paths and config.demo:
        from realtime.demo.models import demo_model_paths

        bundled = demo_model_paths(config.demo)
        paths = [bundled["biased"], bundled["fair"]]
    return [open_engine(path, options) for path in (paths or [default_model()])]


def open_sources(config: LiveConfig) -> list[FrameSource]:
    if not config.sources and config.demo:
        from realtime.sources.demo import DemoSource

        return [DemoSource()]
    return [open_source(spec, config.camera) for spec in (config.sources or ("0",))]


def controls_for(config: LiveConfig, engines: Sequence[Engine]) -> Controls:
    """The starting controls, checked against every model: its class, its method, its class count."""
    method = config.method or default_method(engines)
    for engine in engines:
        resolve_class(config.class_, engine.info.labels, str(engine.path))  # every model must know the class
        lacking = methods.METHODS[method].lacking(engine.provides)
        if lacking:
            raise methods.MethodNeedsGradientsError(
                f"--method {method} needs {lacking}; {engine.path} lacks them"
            )
    top_k = min([config.top_k, *(e.info.num_classes for e in engines)])
    query = Query(method, config.class_, top_k=top_k, layer=layer_index(config.layer, engines))
    return Controls(query, Look(config.alpha, config.style, config.smooth, mirror=config.mirror))


def default_method(engines: Sequence[Engine]) -> str:
    """LayerCAM where every model is a detector (a box's Grad-CAM weighs its whole level; LayerCAM stays on
    what the box's logit reads, as Ultralytics' visualize shows it), Grad-CAM otherwise."""
    return "layercam" if all(e.info.task == TASK_DETECT for e in engines) else "gradcam"


def layer_index(value: str | None, engines: Sequence[Engine]) -> int:
    """--layer as an index, or as a layer name that every model explains at the same index."""
    if value is None:
        return 0
    fewest = min(len(e.info.layers) for e in engines)
    if value.isdigit():
        if int(value) >= fewest:
            raise SessionError(f"--layer {value}: the models explain {fewest} layer(s), numbered from 0")
        return int(value)
    names = [[layer.name for layer in e.info.layers] for e in engines]
    positions = {n.index(value) for n in names if value in n}
    if len(positions) != 1 or not all(value in n for n in names):
        raise SessionError(
            f"--layer {value!r} is not an explained layer of every model at one index; {engines[0].path} "
            f"explains: {', '.join(names[0])}"
        )
    return positions.pop()


@dataclass(frozen=True)
class Plan:
    """What a config resolves to once the display and defaults are known."""

    window_title: str | None
    record: Path | None
    max_frames: int | None


def plan(config: LiveConfig, names: Sequence[str]) -> Plan:
    """The demo with no display writes a video of DEMO_HEADLESS_FRAMES unless told otherwise."""
    title = "gradcam-live" + (f" ({' | '.join(names)})" if len(names) > 1 else "")
    if not config.demo:
        elsewhere = config.record or config.serve or config.save_frames  # outputs that need no window
        if config.window and elsewhere and not has_display():
            print("no display here: running without a window (--no-window)", file=sys.stderr)
            return Plan(None, config.record, config.max_frames)
        return Plan(title if config.window else None, config.record, config.max_frames)
    windowed = config.window and has_display()
    headless = not windowed and not config.serve
    if config.window and not windowed:
        instead = "serving the browser view" if config.serve else "writing a video"
        print(f"no display here: {instead}", file=sys.stderr)
    return Plan(
        title if windowed else None,
        config.record or (DEFAULT_DEMO_VIDEO if headless else None),
        config.max_frames or (DEMO_HEADLESS_FRAMES if headless else None),
    )


def open_browser(config: LiveConfig, engines: Sequence[Engine]) -> Output:
    from realtime.outputs.browser.app import ServeAddressError, ServerThread, make_app, parse_address
    from realtime.outputs.browser.guard import is_loopback, policy_for
    from realtime.outputs.browser.hub import FrameHub

    assert config.serve is not None
    try:
        host, port = parse_address(config.serve)
        provides = frozenset.intersection(*(e.provides for e in engines))
        layers = [layer.name for layer in engines[0].info.layers][: min(len(e.info.layers) for e in engines)]
        hub = FrameHub(engines[0].info.labels, provides, layers, detector=engines[0].info.task == TASK_DETECT)
        server = ServerThread(make_app(hub, config.max_clients, policy_for(host, config.token)), host, port).start()
    except (ServeAddressError, OSError) as exc:
        raise SessionError(str(exc)) from exc
    hub.on_close(server.stop)
    print(f"gradcam-live: browser view at {server.url}", file=sys.stderr)
    if not is_loopback(host) and config.token is None:
        print(
            f"gradcam-live: warning: {host}:{port} is open to anyone on this network, with no authentication; "
            f"pass --token SECRET and open {server.url}?token=SECRET",
            file=sys.stderr,
        )
    return hub


def describe_rateless(source: FrameSource) -> str:
    """What a source without a frame rate is, for the start line: a folder, or a still image."""
    return f"folder {source.name}" if isinstance(source, FolderSource) else source.name


@dataclass(frozen=True)
class SessionResult:
    summary: RunSummary
    engines: tuple[Engine, ...]
    record: Path | None
    snapshots: tuple[Path, ...]
    saved_frames: int


def open_outputs(
    config: LiveConfig, engines: Sequence[Engine], steps: Plan, fps: float, stack: contextlib.ExitStack
) -> tuple[list[Output], Snapshots, FrameSaver | None]:
    """Every output, made once the display rate is known (`fps`: the recordings' rate); `stack` closes them."""
    outputs: list[Output] = []
    try:
        if steps.window_title:
            layers = min(len(e.info.layers) for e in engines)
            window = Window(steps.window_title, layers, config.fullscreen, config.window_size)
            outputs.append(stack.enter_context(window))
        if config.serve:
            outputs.append(stack.enter_context(open_browser(config, engines)))
    except SinkError as exc:
        raise SessionError(str(exc)) from exc
    snapshots = Snapshots(config.snapshots)
    outputs += [stack.enter_context(Recorder(steps.record, config.snapshots, fps)), snapshots]
    saver = FrameSaver(config.save_frames) if config.save_frames else None
    return outputs + ([saver] if saver else []), snapshots, saver


def run_session(config: LiveConfig) -> SessionResult:
    """Load, open, run until the end, and close every output (also on errors)."""
    engines = load_engines(config)
    print(engines[0].notice, file=sys.stderr)
    for warning in sorted({e.cpu_warning for e in engines if e.cpu_warning}):
        print(warning, file=sys.stderr)
    controls = controls_for(config, engines)
    sources = SourceSet(open_sources(config))
    steps = plan(config, panel_names(engines))
    try:  # closing the outputs checks what they wrote: a recording the disk could not hold is an error
        with contextlib.ExitStack() as stack:
            stack.enter_context(sources)  # a bad source fails before any output is made
            for source in sources.sources:  # a camera that gave another mode than asked: one line each
                notice = getattr(source, "notice", None)
                if notice:
                    print(f"gradcam-live: {notice}", file=sys.stderr)
            model_ms = sum(e.warmup_ms for e in engines)
            fps = sources.sources[0].fps or 0.0  # 0: folders, stills
            try:
                display = choose_display(config.display, model_ms, fps)
            except ValueError as exc:
                raise SessionError(str(exc)) from exc
            first = sources.sources[0]
            rate = f"source {fps:.0f} FPS" if fps else f"source {describe_rateless(first)}: no frame rate"
            rates = f"model {model_ms:.0f} ms, {rate}"
            print(f"gradcam-live: display at {display} rate ({rates})", file=sys.stderr)
            outputs, snapshots, saver = open_outputs(config, engines, steps, record_rate(display, model_ms, fps), stack)
            loop = Loop(engines, sources, controls, outputs, display, config.fit, config.warp)
            with stop_on_signals(loop):
                summary = loop.run(steps.max_frames)
    except SinkError as exc:
        raise SessionError(str(exc)) from exc
    if saver is not None and not saver.failure:
        print(f"gradcam-live: {saver.report()}", file=sys.stderr)
    return SessionResult(summary, tuple(engines), steps.record, tuple(snapshots.saved), saver.saved if saver else 0)
