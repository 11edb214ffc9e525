"""One live session: engines + source + sinks (window, recorder, snapshots, browser) around a LiveLoop.

`gradcam-live` and `gradcam-live --demo` differ only in their engines and source; both run here.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime.camera_loop import CameraRateLoop, choose_display
from realtime.capture import FrameSource, LatestFrameReader
from realtime.engine import Engine
from realtime.pipeline import Controls, FrameReport, LiveLoop, RunSummary
from realtime.sinks import FrameSaver, RecordSwitch, SinkError, Window, save_snapshot


@dataclass(frozen=True)
class Outputs:
    """Where the drawn frames go."""

    window_title: str | None  # None: headless
    record: Path | None
    snapshots: Path
    serve: str | None = None  # [HOST:]PORT for the browser view
    max_clients: int = 4
    token: str | None = None  # the browser view's token for non-loopback clients
    record_fps: float | None = None  # None: the rate frames are shown at (see record_rate)
    save_frames: Path | None = None  # keep camera frames here for int8 calibration
    display: str = "auto"  # auto | camera | model (see camera_loop.DISPLAY_MODES)
    warp: bool = True  # camera-rate display: carry maps by optical flow (off: show them stale)


class SessionError(RuntimeError):
    """A sink could not be opened; the message says what to do."""


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


@contextlib.contextmanager
def stop_on_signals(loop: LiveLoop) -> Iterator[None]:
    """SIGTERM and Ctrl-C end the loop like the q key: the recording is finished, the summary printed.

    A second signal interrupts at once. Only the main thread can take signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        if loop.stop_requested:
            raise KeyboardInterrupt
        loop.stop_requested = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_session(
    engines: Sequence[Engine],
    source: FrameSource,
    controls: Controls,
    outputs: Outputs,
    fit_mode: str = "squash",
    max_frames: int | None = None,
    log_prefix: str = "gradcam-live",
) -> RunSummary:
    """Open the sinks, run the loop until it ends, close everything (also on errors)."""
    hub = server = None
    try:
        window = Window(outputs.window_title) if outputs.window_title else None
    except SinkError as exc:
        raise SessionError(str(exc)) from exc
    if outputs.serve:
        from realtime.serve.app import ServeAddressError, ServerThread, make_app, parse_address
        from realtime.serve.guard import is_loopback, policy_for
        from realtime.serve.hub import FrameHub

        try:
            host, port = parse_address(outputs.serve)
            hub = FrameHub(engines[0].info.num_classes, all(e.has_gradients for e in engines))
            app = make_app(hub, outputs.max_clients, policy_for(host, outputs.token))
            server = ServerThread(app, host, port).start()
        except (ServeAddressError, OSError) as exc:
            if window:
                window.close()
            raise SessionError(str(exc)) from exc
        print(f"{log_prefix}: browser view at {server.url}", file=sys.stderr)
        if not is_loopback(host) and outputs.token is None:
            print(
                f"{log_prefix}: warning: {host}:{port} is open to anyone on this network, with no authentication; "
                f"pass --token SECRET and open {server.url}?token=SECRET",
                file=sys.stderr,
            )
    recording = RecordSwitch(outputs.record, outputs.snapshots)  # its rate is set once the display is chosen
    saver = FrameSaver(outputs.save_frames) if outputs.save_frames else None

    def on_frame(report: FrameReport) -> None:
        if hub is not None:
            hub.publish_report(report)
        if saver is not None:
            saver.save(report.source)

    reader = LatestFrameReader(source)
    try:
        reader.start()  # a bad source fails here, and the finally below still closes the sinks
        model_ms = sum(e.warmup_ms for e in engines)
        try:
            display = choose_display(outputs.display, model_ms, source.fps or 0.0)  # 0: folders, stills
        except ValueError as exc:
            raise SessionError(str(exc)) from exc
        recording.fps = outputs.record_fps or record_rate(display, model_ms, source.fps or 0.0)
        print(
            f"{log_prefix}: display at {display} rate (model {model_ms:.0f} ms, source {source.fps or 0:.0f} FPS)",
            file=sys.stderr,
        )
        common: dict[str, Any] = {
            "fit_mode": fit_mode,
            "show": window.show if window else None,
            "sinks": [recording],
            "snapshot": lambda image: save_snapshot(image, outputs.snapshots),
            "toggle_record": recording.toggle,
            "on_frame": on_frame,
            "poll_controls": hub.apply_pending if hub is not None else None,
        }
        with reader:
            loop = (
                CameraRateLoop(engines, reader, controls, warp_maps=outputs.warp, **common)
                if display == "camera"
                else LiveLoop(engines, reader, controls, **common)
            )
            with stop_on_signals(loop):
                return loop.run(max_frames)
    finally:
        recording.close()
        if window:
            window.close()
        if server is not None:
            server.stop()
        if saver is not None and saver.saved:
            print(
                f"{log_prefix}: kept {saver.saved} frames in {outputs.save_frames} (gradcam-export --int8 "
                f"--calibration {outputs.save_frames})",
                file=sys.stderr,
            )
