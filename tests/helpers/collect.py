"""An output that keeps what it was shown, and presses keys: the live tests' eyes and hands."""

from __future__ import annotations

from collections.abc import Sequence

from realtime.outputs.base import Output, Shown
from realtime.outputs.controls import Controls, apply_key


class Collect(Output):
    """Keeps every frame it is given (and optionally presses keys, one per frame)."""

    def __init__(self, keys: Sequence[int] = ()) -> None:
        self.shown: list[Shown] = []
        self.keys = list(keys)

    def write(self, shown: Shown) -> None:
        self.shown.append(shown)

    def steer(self, controls: Controls, provides: frozenset[str]) -> tuple[Controls, tuple[str, ...]]:
        key = self.keys.pop(0) if self.keys else -1
        controls, action = apply_key(controls, key, provides)
        return controls, (action,) if action else ()
