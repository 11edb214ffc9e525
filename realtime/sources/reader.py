"""One source behind a threaded reader that hands over the newest frame.

Live sources (cameras, network streams, the demo) drop stale frames rather
than queue them, and are reopened with back-off when they drop out. Files and
image folders deliver every frame and end cleanly at the end or at a
truncation. The reader never hands the same frame out twice.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from realtime.sources.frame import BadFrameError, Frame, to_bgr
from realtime.sources.kinds import FrameSource, SourceError


@dataclass(frozen=True)
class Backoff:
    """Delays between reopen attempts of a live source that dropped out."""

    first: float = 0.1
    factor: float = 2.0
    limit: float = 2.0
    attempts: int = 8

    def delays(self) -> list[float]:
        return [min(self.limit, self.first * self.factor**i) for i in range(self.attempts)]


class LatestFrameReader:
    """Reads a source on its own thread; `get` returns the newest frame not yet handed out."""

    def __init__(
        self,
        source: FrameSource,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    ) -> None:
        self.source = source
        self.backoff = backoff or Backoff()
        self._clock, self._sleep, self._log = clock, sleep, log
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._handed = -1
        self._ended = False
        self._stop = threading.Event()
        self.captured = 0
        self.dropped = 0
        self.bad_frames = 0
        self.reconnects = 0
        self.end_reason = ""
        self.reconnecting = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"capture:{source.name}", daemon=True)

    def __enter__(self) -> LatestFrameReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Open the source here, in the caller's thread, so a bad source fails fast with its own message."""
        if self._thread.is_alive():
            return
        self.source.open()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.source.close()

    def _finish(self, reason: str) -> None:
        with self._cond:
            self._ended = True
            self.end_reason = reason
            self._cond.notify_all()

    def _reopen(self) -> bool:
        self.reconnecting = True
        try:
            return self._reopen_with_backoff()
        finally:
            self.reconnecting = False

    def _reopen_with_backoff(self) -> bool:
        self.source.close()
        for delay in self.backoff.delays():
            if self._stop.is_set():
                return False
            self._log(f"{self.source.name} dropped out; reopening in {delay:.1f} s")
            self._sleep(delay)
            try:
                self.source.open()
            except SourceError:
                continue
            self.reconnects += 1
            return True
        return False

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                raw = self.source.read()
                if raw is None:
                    if not self.source.live:
                        note = getattr(self.source, "end_note", lambda: "")()
                        self._finish("end of stream" + note)
                        return
                    if not self._reopen():
                        self._finish(f"{self.source.name} lost; try --source FILE or --demo")
                        return
                    continue
                try:
                    image = to_bgr(raw)
                except BadFrameError:
                    self.bad_frames += 1
                    continue
                stamp = self._clock()
                with self._cond:
                    if not self.source.live:
                        # files: wait until the consumer took the previous frame, drop nothing
                        while (
                            self._latest is not None and self._latest.index > self._handed and not self._stop.is_set()
                        ):
                            self._cond.wait(0.1)
                    elif self._latest is not None and self._latest.index > self._handed:
                        self.dropped += 1
                    self.captured += 1
                    self._latest = Frame(self.captured - 1, image, stamp)
                    self._cond.notify_all()
        except Exception as exc:  # the loop thread must report, not vanish
            self.error = exc
            self._finish(f"capture failed: {type(exc).__name__}: {exc}")

    def get(self, timeout: float | None = None) -> Frame | None:
        """The newest unseen frame; None once the source has ended (or on timeout)."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._latest is not None and self._latest.index > self._handed:
                    self._handed = self._latest.index
                    self._cond.notify_all()
                    if not self.source.live:  # a file frame waited for us; its clock starts now
                        return replace(self._latest, captured_at=self._clock())
                    return self._latest
                if self._ended or self._stop.is_set():
                    return None
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))
