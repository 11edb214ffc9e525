"""Thread-safe meeting point of the live loop (producer) and the web server (consumers).

The loop publishes every drawn frame and its HUD; clients always take the newest
frame, so a slow one skips frames instead of holding the loop back. Control
changes from the browser wait here until the loop polls them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from realtime import cam
from realtime.cam import SMOOTH_MAX
from realtime.pipeline import Controls, FrameReport, Stats


class ControlError(ValueError):
    """A browser request that cannot be applied; the message says why."""


@dataclass(frozen=True)
class Snapshot:
    """What the page shows besides the picture."""

    sequence: int = 0
    stats: Stats = field(default_factory=Stats)
    top: tuple[tuple[int, str, float], ...] = ()
    explained: str = ""
    controls: Controls = field(default_factory=Controls)


def _short(value: object) -> str:
    """A client's value for an error message, cut short (it may be a 4000-digit number)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**18 else "(a huge number)"
    return text if len(text) <= 40 else text[:37] + "..."


def parse_control(body: object, num_classes: int, has_gradients: bool) -> dict[str, Any]:
    """Validate a POST /api/control body into Controls fields; anything odd is a ControlError."""
    if not isinstance(body, Mapping):
        raise ControlError('the body must be a JSON object, e.g. {"method": "gradcam"}')
    allowed = {"method", "class", "alpha", "smooth", "frozen"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ControlError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    if not body:
        raise ControlError("empty request: send at least one of " + ", ".join(sorted(allowed)))
    changes: dict[str, Any] = {}
    if "method" in body:
        method = body["method"]
        if not isinstance(method, str) or method not in cam.METHODS:
            raise ControlError(f"method {_short(method)} is not one of {', '.join(cam.METHODS)}")
        if cam.METHODS[method].needs_gradients and not has_gradients:
            raise ControlError(f"method {method!r} needs a model exported with --gradients full")
        changes["method"] = method
    if "class" in body:
        value = body["class"]
        if value == "auto":
            changes.update(class_id=None, rank=0)
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < num_classes:
            changes.update(class_id=value, rank=0)
        else:
            raise ControlError(f'class {_short(value)} must be "auto" or an id from 0 to {num_classes - 1}')
    for name, top in (("alpha", 1.0), ("smooth", SMOOTH_MAX)):
        if name in body:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= top:
                raise ControlError(f"{name} {_short(value)} must be a number from 0 to {top}")
            changes[name] = float(value)
    if "frozen" in body:
        if not isinstance(body["frozen"], bool):
            raise ControlError(f"frozen {_short(body['frozen'])} must be true or false")
        changes["frozen"] = body["frozen"]
    return changes


class FrameHub:
    """Newest frame (JPEG-encoded once, on first demand), the page's state, and pending controls."""

    def __init__(self, num_classes: int, has_gradients: bool, jpeg_quality: int = 80) -> None:
        self.num_classes, self.has_gradients, self.jpeg_quality = num_classes, has_gradients, jpeg_quality
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self._png: tuple[int, bytes] | None = None
        self._snapshot = Snapshot()
        self._pending: dict[str, Any] = {}
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (from the loop's thread) after every publish: lets the server wake its streams."""
        self._listeners.append(callback)

    def publish(
        self, image: np.ndarray, stats: Stats, top: Sequence[tuple[int, str, float]], explained: str, controls: Controls
    ) -> None:
        """Called by the loop for every drawn frame: cheap, no encoding here."""
        with self._lock:
            self._frame = image
            self._snapshot = Snapshot(self._snapshot.sequence + 1, stats, tuple(top), explained, controls)
        for listener in self._listeners:
            listener()

    def publish_report(self, report: FrameReport) -> None:
        self.publish(report.image, report.stats, report.result.top(0, 5), report.hud.label, report.controls)

    @property
    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    def latest_jpeg(self) -> tuple[int, bytes] | None:
        """(sequence, JPEG) of the newest frame; encoded once however many clients ask."""
        with self._lock:
            sequence, frame = self._snapshot.sequence, self._frame
            if frame is None:
                return None
            if self._jpeg is not None and self._jpeg[0] == sequence:
                return self._jpeg
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return None
        encoded = (sequence, data.tobytes())
        with self._lock:
            if self._jpeg is None or self._jpeg[0] < sequence:
                self._jpeg = encoded
        return encoded

    def latest_png(self) -> bytes | None:
        """PNG of the newest frame; encoded once per frame however many snapshots are asked for."""
        with self._lock:
            sequence, frame = self._snapshot.sequence, self._frame
            if frame is None:
                return None
            if self._png is not None and self._png[0] == sequence:
                return self._png[1]
        ok, data = cv2.imencode(".png", frame)
        if not ok:
            return None
        with self._lock:
            if self._png is None or self._png[0] < sequence:
                self._png = (sequence, data.tobytes())
        return data.tobytes()

    def request(self, body: object) -> dict[str, Any]:
        """Validate and queue a control change from the browser; returns the accepted fields."""
        changes = parse_control(body, self.num_classes, self.has_gradients)
        with self._lock:
            self._pending.update(changes)
        return changes

    def apply_pending(self, controls: Controls) -> Controls:
        """The loop's poll: fold queued browser changes into its controls."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return replace(controls, **pending) if pending else controls
