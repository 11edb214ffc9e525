"""Numbered steps with their duration on stderr, so a long run never looks hung."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Progress:
    """`with progress.step("exporting"):` prints "[2/5] exporting ..." and then the time it took."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.times: dict[str, float] = {}  # stage key -> seconds, for reports and the benchmark

    @contextmanager
    def step(self, what: str, key: str | None = None) -> Iterator[None]:
        """One numbered step; its time is kept under `key` (default: `what`)."""
        self.done += 1
        if not self.quiet:
            print(f"[{self.done}/{self.total}] {what} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.times[key or what] = self.times.get(key or what, 0.0) + seconds
        if not self.quiet:
            print(f"      done in {seconds:.1f} s", file=sys.stderr, flush=True)
