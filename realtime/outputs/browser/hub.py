"""Thread-safe meeting point of the live loop (producer) and the web server (consumers).

The loop publishes every drawn frame and its HUD; clients always take the newest
frame, so a slow one skips frames instead of holding the loop back. Control
changes and actions from the browser wait here until the loop polls them; an action (a
snapshot into --snapshots) is carried out on the frame that was on screen when the loop read it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from realtime.contract import MAX_BOXES
from realtime.engines.result import DetectResult
from realtime.maps import methods
from realtime.maps.methods import SMOOTH_MAX
from realtime.maps.query import ALL_BOXES, Query
from realtime.outputs.base import Output, Shown
from realtime.outputs.controls import SNAPSHOT, Controls
from realtime.sources.fitting import Letterbox
from realtime.timing import Stats
from realtime.view.overlay import STYLES

ACTIONS = (SNAPSHOT,)  # what the browser may ask of the loop besides controls (the s key's snapshot)
QUERY_FIELDS = frozenset(f.name for f in fields(Query))  # the rest of a request's fields change the look


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
    boxes: tuple[tuple[int, str, float, tuple[float, float, float, float]], ...] = ()  # a detector's: slot, label,
    # score, box in the first source's frame pixels
    frame: tuple[int, int] = (0, 0)  # that frame's width and height


def _short(value: object) -> str:
    """A client's value for an error message, cut short (it may be a 4000-digit number)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**18 else "(a huge number)"
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class _Context:
    """What a control value is checked against: the first model's labels, what the graphs provide."""

    labels: Sequence[str]
    provides: frozenset[str]
    layers: int


def _method(value: object, ctx: _Context) -> dict[str, Any]:
    if not isinstance(value, str) or value not in methods.METHODS:
        raise ControlError(f"method {_short(value)} is not one of {', '.join(methods.METHODS)}")
    lacking = methods.METHODS[value].lacking(ctx.provides)
    if lacking:
        raise ControlError(f"method {value!r} needs {lacking}")
    return {"method": value}


def _class(value: object, ctx: _Context) -> dict[str, Any]:
    if isinstance(value, str) and value == "auto":
        return {"class_name": None, "class_id": None, "rank": 0}
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(ctx.labels):
        return {"class_name": ctx.labels[value], "class_id": value, "rank": 0}
    raise ControlError(f'class {_short(value)} must be "auto" or an id from 0 to {len(ctx.labels) - 1}')


def _number(name: str, top: float) -> Callable[[object, _Context], dict[str, Any]]:
    def check(value: object, ctx: _Context) -> dict[str, Any]:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)  # an integer too large for a float raises here
            except OverflowError:
                number = None
        if number is None or not 0.0 <= number <= top:  # NaN fails both comparisons
            raise ControlError(f"{name} {_short(value)} must be a number from 0 to {top}")
        return {name: number}

    return check


def _box(value: object, ctx: _Context) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, int) or not ALL_BOXES <= value < MAX_BOXES:
        raise ControlError(f"box {_short(value)} must be a box's rank from 0 to {MAX_BOXES - 1}, or -1 for all")
    return {"box": value, "class_name": None, "class_id": None}


def _layer(value: object, ctx: _Context) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < ctx.layers:
        raise ControlError(f"layer {_short(value)} must be an index from 0 to {ctx.layers - 1}")
    return {"layer": value}


def _choice(name: str, options: Sequence[str], key: str | None = None) -> Callable[[object, _Context], dict[str, Any]]:
    def check(value: object, ctx: _Context) -> dict[str, Any]:
        if not isinstance(value, str) or value not in options:
            raise ControlError(f"{name} {_short(value)} is not one of {', '.join(options)}")
        return {key or name: value}

    return check


def _flag(value: object, ctx: _Context) -> dict[str, Any]:
    if not isinstance(value, bool):
        raise ControlError(f"frozen {_short(value)} must be true or false")
    return {"frozen": value}


FIELDS: Mapping[str, Callable[[object, _Context], dict[str, Any]]] = {
    "method": _method,
    "class": _class,
    "alpha": _number("alpha", 1.0),
    "smooth": _number("smooth", SMOOTH_MAX),
    "layer": _layer,
    "box": _box,
    "style": _choice("style", tuple(STYLES)),
    "frozen": _flag,
    "action": _choice("action", ACTIONS),
}  # one row per field a client may send: its type and range, checked before any use


def parse_control(body: object, labels: Sequence[str], provides: frozenset[str], layers: int = 1) -> dict[str, Any]:
    """Validate a POST /api/control body into Query and Look fields (and an `action`); anything odd is a
    ControlError.

    A class comes as an id of the first model's labels: the first model explains that id, the others
    the class of the same name (controls.class_id_in), and a model without it says so on screen.
    """
    if not isinstance(body, Mapping):
        raise ControlError('the body must be a JSON object, e.g. {"method": "gradcam"}')
    unknown = sorted(_short(key) for key in body if key not in FIELDS)
    if unknown:
        raise ControlError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(FIELDS))}")
    if not body:
        raise ControlError("empty request: send at least one of " + ", ".join(sorted(FIELDS)))
    ctx = _Context(labels, provides, layers)
    changes: dict[str, Any] = {}
    for name, value in body.items():
        changes.update(FIELDS[name](value, ctx))
    return changes


def _first_boxes(shown: Shown, result: DetectResult) -> Snapshot:
    """The first model's boxes on the first source's frame, in its pixels (what a click on the page picks)."""
    frame = shown.frames[0]
    placement = shown.placements[0][0] if shown.placements else None
    if frame is None or not isinstance(placement, Letterbox):
        return Snapshot()
    count = int(result.count[0])
    boxes = placement.to_frame(result.boxes[0, :count], frame.image.shape)
    rows = tuple(
        (slot, result.label(int(result.classes[0, slot])), round(float(result.scores[0, slot]), 4),
         tuple(round(float(v), 1) for v in boxes[slot]))
        for slot in range(count)
    )  # fmt: skip
    return Snapshot(boxes=rows, frame=(frame.image.shape[1], frame.image.shape[0]))  # type: ignore[arg-type]


class FrameHub(Output):
    """Newest frame (JPEG-encoded once, on first demand), the page's state, and pending controls.

    As an output it takes every presented frame, and steers the loop with the browser's changes.
    """

    def __init__(
        self, labels: Sequence[str], provides: frozenset[str], layers: Sequence[str] = ("",), jpeg_quality: int = 80,
        detector: bool = False,
    ) -> None:  # fmt: skip
        self.labels, self.provides, self.jpeg_quality = list(labels), provides, jpeg_quality
        self.detector = detector  # the first model is a detector: the page lists boxes, a click picks one
        self.layers = list(layers)  # the explained layers every model has, by index
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self._png: tuple[int, bytes] | None = None
        self._snapshot = Snapshot()
        self._pending: dict[str, Any] = {}
        self._actions: list[str] = []
        self._listeners: list[Callable[[], None]] = []
        self._closers: list[Callable[[], None]] = []

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run when the session closes this output (the server that serves it stops)."""
        self._closers.append(callback)

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for callback in closers:
            callback()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (from the loop's thread) after every publish: lets the server wake its streams."""
        self._listeners.append(callback)

    def publish(
        self, image: np.ndarray, stats: Stats, top: Sequence[tuple[int, str, float]], explained: str,
        controls: Controls, boxes: Snapshot | None = None,
    ) -> None:  # fmt: skip
        """Called by the loop for every drawn frame: cheap, no encoding here. `boxes`: a detector's boxes and
        frame size, in a Snapshot's fields."""
        with self._lock:
            self._frame = image
            found = boxes or Snapshot()
            self._snapshot = Snapshot(self._snapshot.sequence + 1, stats, tuple(top), explained, controls,
                                      found.boxes, found.frame)  # fmt: skip
        for listener in self._listeners:
            listener()

    def write(self, shown: Shown) -> None:
        explained = shown.huds[0].label if shown.huds else ""
        result = shown.results[0]
        if isinstance(result, DetectResult):
            found = _first_boxes(shown, result)
            top = [(slot, label, score) for slot, label, score, _ in found.boxes]
            self.publish(shown.image, shown.stats, top, explained, shown.controls, found)
        else:
            self.publish(shown.image, shown.stats, result.top(0, 5), explained, shown.controls)

    def steer(self, controls: Controls, provides: frozenset[str]) -> tuple[Controls, tuple[str, ...]]:
        with self._lock:
            actions, self._actions = tuple(self._actions), []
        return self.apply_pending(controls), actions

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
        """Validate and queue a control change or an action from the browser; returns the accepted fields."""
        changes = parse_control(body, self.labels, self.provides, len(self.layers))
        fields = {name: value for name, value in changes.items() if name != "action"}
        with self._lock:
            self._pending.update(fields)
            if "action" in changes and changes["action"] not in self._actions:  # once per frame however often asked
                self._actions.append(changes["action"])
        return changes

    def apply_pending(self, controls: Controls) -> Controls:
        """The loop's poll: fold queued browser changes into its controls."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return controls
        asked = {name: value for name, value in pending.items() if name in QUERY_FIELDS}
        shown = {name: value for name, value in pending.items() if name not in QUERY_FIELDS}
        return controls.asking(**asked).showing(**shown)
