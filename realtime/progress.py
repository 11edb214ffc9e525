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

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.done += 1
        if not self.quiet:
            print(f"[{self.done}/{self.total}] {what} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        if not self.quiet:
            print(f"      done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
