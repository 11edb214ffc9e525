"""Where presented frames go: one interface, one call per frame.

Every output takes `write(shown)` for each presented frame and is a context manager
that finishes its files on exit. Outputs that also take input from the presenter
(the window's keys, the browser's buttons) answer `steer`; the actions that input asks for
(snapshot, record) come back to every output through `act`, with the frame that was on
screen when they came. The loop holds a plain list.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from realtime.engines.result import Result
from realtime.outputs.controls import Controls
from realtime.sources.fitting import Placement
from realtime.sources.frame import Frame
from realtime.timing import Stats
from realtime.view.hud import Hud

Log = Callable[[str], None]


class SinkError(RuntimeError):
    """An output cannot be opened or written; the message says what to do."""


def stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class Shown:
    """One presented frame, as every output receives it."""

    image: np.ndarray  # the drawn mosaic
    huds: tuple[Hud, ...]  # one per model panel, source by source
    stats: Stats
    results: tuple[Result, ...]  # one per model, a batch over the sources
    controls: Controls  # what the frame was drawn with
    frames: tuple[Frame | None, ...]  # the camera frames it was drawn on, one per source
    placements: tuple[tuple[Placement | None, ...], ...] = ()  # [model][source]: how each frame was fitted


AnyOutput = TypeVar("AnyOutput", bound="Output")


class Output:
    """The interface: write every presented frame; optionally steer the controls; close."""

    def write(self, shown: Shown) -> None:
        raise NotImplementedError

    def steer(self, controls: Controls, provides: frozenset[str]) -> tuple[Controls, tuple[str, ...]]:
        """New controls and actions from the presenter (`provides`: what every model's graph gives)."""
        return controls, ()

    def act(self, actions: tuple[str, ...], shown: Shown) -> None:
        """Carry out the presenter's actions (snapshot, record) on `shown`, the frame on screen when they came."""

    def close(self) -> None:
        """Finish files, close windows; safe to call twice."""

    def __enter__(self: AnyOutput) -> AnyOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # never swallows the exception that ended the block
