"""Third-party noise, silenced where it says nothing the user can act on (--verbose shows it all).

FFmpeg prints a page for each encoder it cannot open; TensorFlow prints "Could not find cuda drivers"
before its own log level applies; onnxruntime's quantizer logs advice about pre-processing that the
exporter's graphs do not need (their shapes are inferred already).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def quiet_stderr(enabled: bool = True) -> Iterator[None]:
    """Silence C-level stderr (file descriptor 2) inside the block; Python exceptions still propagate."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def quiet_logging(enabled: bool = True, level: int = logging.ERROR) -> Iterator[None]:
    """Python logging below `level` dropped inside the block (the quantizer logs on the root logger)."""
    if not enabled:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(level - 1)
    try:
        yield
    finally:
        logging.disable(previous)


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's own log silenced inside the block (it logs a page per backend or encoder it tries); the
    caller's one-line message says it better."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


class Throttle:
    """One line per kind of trouble per `interval` seconds, with how many were held back: a failure that repeats
    every frame (a bad result, a refused connection) says so once, not a hundred thousand times."""

    def __init__(self, say: Callable[[str], None], interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.say, self.interval, self.clock = say, interval, clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def passes(self, kind: str) -> int | None:
        """None: one of `kind` passed less than `interval` ago, so this one is held back (and counted); else
        how many were held back since the last that passed."""
        with self._lock:
            now = self.clock()
            if now - self._last.get(kind, -self.interval) < self.interval:
                self._held[kind] = self._held.get(kind, 0) + 1
                return None
            self._last[kind] = now
            return self._held.pop(kind, 0)

    def __call__(self, kind: str, line: str) -> None:
        held = self.passes(kind)
        if held is not None:
            self.say(line + (f" ({held} more like it since the last line)" if held else ""))
