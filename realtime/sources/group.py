"""Several sources side by side: the newest frame of each, and lost ones reopened while the others go on."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence

from realtime.sources.frame import Frame
from realtime.sources.kinds import FrameSource, SourceError
from realtime.sources.reader import Backoff, LatestFrameReader

REOPEN_EVERY_S = 3.0  # a lost source among several is tried again this often, for as long as the others run


class SourceSet:
    """Several sources read side by side; `get` hands over the newest frame of each.

    With one source it is that source's reader. With several, a call returns as soon as any
    source has a new frame, with the latest frame of every other one beside it (None until a
    source's first frame), but not more often than the fastest source delivers: two unsynchronised
    30 FPS cameras would otherwise draw the mosaic 60 times a second, each time with only one of
    them new, at twice the drawing cost and nothing more to see. A live source that drops out is
    reported in `lost` and reopened in the background while the others go on; the set ends when
    every source has ended.
    """

    def __init__(
        self,
        sources: Sequence[FrameSource],
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.perf_counter,
        log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
        reopen_every: float = REOPEN_EVERY_S,
    ) -> None:
        if not sources:
            raise ValueError("SourceSet needs at least one source")
        self.sources = list(sources)
        self._backoff, self._clock, self._log, self.reopen_every = backoff, clock, log, reopen_every
        self.readers = [self._reader(s) for s in self.sources]
        self._latest: list[Frame | None] = [None] * len(self.sources)
        self._retry_at = [0.0] * len(self.sources)
        self._lock = threading.Lock()
        self.step_every = 0.0  # set by start(): a camera or file knows its rate only once opened
        self._stepped_at: float | None = None

    def _reader(self, source: FrameSource) -> LatestFrameReader:
        return LatestFrameReader(source, self._backoff, self._clock, log=self._log)

    def __enter__(self) -> SourceSet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Open every source in the caller's thread: a bad one fails here with its own message."""
        started: list[LatestFrameReader] = []
        try:
            for reader in self.readers:
                reader.start()
                started.append(reader)
        except BaseException:
            for reader in started:
                reader.stop()
            raise
        fastest = max((s.fps or 0.0 for s in self.sources if s.live), default=0.0)  # files: every frame
        self.step_every = 0.95 / fastest if fastest > 0 and len(self.sources) > 1 else 0.0  # 5%: clocks jitter

    def stop(self) -> None:
        with self._lock:
            readers = list(self.readers)
        for reader in readers:
            reader.stop()

    def _ended(self, i: int) -> bool:
        reader = self.readers[i]
        return bool(reader.end_reason) and not (self.sources[i].live and len(self.sources) > 1)

    def lost(self) -> tuple[str, ...]:
        """Per source: why it shows no picture now ("" when it is fine)."""
        notes = []
        for reader in self.readers:
            if reader.reconnecting or (reader.end_reason and reader.source.live):
                notes.append("reconnecting")
            else:
                notes.append("")
        return tuple(notes)

    def _revive(self, i: int) -> None:
        """Reopen a lost live source on a short-lived thread (opening a camera can block)."""
        now = self._clock()
        if now < self._retry_at[i]:
            return
        self._retry_at[i] = now + self.reopen_every

        def reopen() -> None:
            reader = self._reader(self.sources[i])
            try:
                reader.start()
            except SourceError:
                return
            with self._lock:
                old, self.readers[i] = self.readers[i], reader
            old.stop()
            self._log(f"{self.sources[i].name} is back")

        threading.Thread(target=reopen, name=f"reopen:{self.sources[i].name}", daemon=True).start()

    def get(self, timeout: float | None = None) -> tuple[Frame | None, ...] | None:
        """The newest frame of each source once any has a new one; None when all have ended."""
        if len(self.readers) == 1:
            frame = self.readers[0].get(timeout)
            return None if frame is None else (frame,)
        deadline = None if timeout is None else self._clock() + timeout
        fresh = False  # a new frame since the last step, kept while the step waits for its turn
        while True:
            for i in range(len(self.readers)):
                with self._lock:
                    reader = self.readers[i]
                frame = reader.get(timeout=0.0)
                if frame is not None:
                    self._latest[i], fresh = frame, True
                elif reader.end_reason and self.sources[i].live:
                    self._latest[i] = None
                    self._revive(i)
            now = self._clock()
            if fresh and (self._stepped_at is None or now - self._stepped_at >= self.step_every):
                self._stepped_at = now
                return tuple(self._latest)
            if all(self._ended(i) for i in range(len(self.readers))):
                return None
            if deadline is not None and now >= deadline:
                return None
            time.sleep(0.002)

    @property
    def end_reason(self) -> str:
        reasons = [r.end_reason for r in self.readers]
        if len(reasons) == 1:
            return reasons[0]
        return "every source ended" if all(reasons) else ""

    def totals(self) -> dict[str, int]:
        """Frames captured, dropped and bad, and reconnects, over every source."""
        keys = ("captured", "dropped", "bad_frames", "reconnects")
        return {k: sum(int(getattr(r, k)) for r in self.readers) for k in keys}
