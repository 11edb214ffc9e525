"""What the presenter steers: a query (what to explain) and a look (how to show it), and the keys.

The window's keys and the browser's buttons replace the controls with new frozen values; the
actions they ask for (quit, snapshot, record) are said apart, and carried out by the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from realtime.maps import methods
from realtime.maps.query import ALL_BOXES, EXPLAINED_BOXES, Query
from realtime.view.look import Look
from realtime.view.overlay import STYLES

QUIT, SNAPSHOT, RECORD = "quit", "snapshot", "record"
FULLSCREEN, HELP = "fullscreen", "help"
WINDOW_ACTIONS = {"f": FULLSCREEN, "h": HELP}  # the window's own: they change how it shows, not what
ACTIONS = {"q": QUIT, "\x1b": QUIT, "s": SNAPSHOT, "r": RECORD, **WINDOW_ACTIONS}

KEYS: Mapping[str, str] = {  # the README's key table, and the window's help
    "q / Esc": "quit",
    "space": "freeze the frame (keep explaining it)",
    "m": "next method",
    "o": "next overlay style",
    "l": "next explained layer (graphs exported with several --layer)",
    "1-5": "explain the class ranked 1st-5th",
    "0": "back to the top-1 class",
    "n": "detectors: the next box (a click picks the box under the cursor)",
    "b": "detectors: every explained box's map at once, or back to one",
    "s": "snapshot (PNG in --snapshots)",
    "r": "start / stop recording",
    "v": "mirror the view (the model sees the mirrored frame)",
    "f": "full screen on / off",
    "h": "show / hide this list of keys",
}


@dataclass(frozen=True)
class Controls:
    """What to explain and how to show it; one value for every panel."""

    query: Query = field(default_factory=Query)
    look: Look = field(default_factory=Look)

    def asking(self, **changes: object) -> Controls:
        """These controls with the query changed."""
        return replace(self, query=replace(self.query, **changes))  # type: ignore[arg-type]

    def showing(self, **changes: object) -> Controls:
        """These controls with the look changed."""
        return replace(self, look=replace(self.look, **changes))  # type: ignore[arg-type]


def _next(options: Sequence[str], current: str) -> str:
    index = options.index(current) if current in options else -1
    return options[(index + 1) % len(options)]


def _ranked(rank: int) -> Callable[[Controls, frozenset[str], int], Controls]:
    return lambda c, provides, layers: c.asking(class_name=None, class_id=None, rank=rank)


KeyRule = Callable[[Controls, frozenset[str], int], Controls]  # (controls, what the graphs provide, layers)
KEY_RULES: Mapping[str, KeyRule] = {  # one row per key that changes the controls
    " ": lambda c, provides, layers: c.showing(frozen=not c.look.frozen),
    "v": lambda c, provides, layers: c.showing(mirror=not c.look.mirror),
    "o": lambda c, provides, layers: c.showing(style=_next(list(STYLES), c.look.style)),
    "m": lambda c, provides, layers: c.asking(method=_next(methods.usable_methods(provides), c.query.method)),
    "l": lambda c, provides, layers: c.asking(layer=(c.query.layer + 1) % max(1, layers)),
    "n": lambda c, provides, layers: c.asking(box=(c.query.box + 1) % EXPLAINED_BOXES, class_name=None),
    "b": lambda c, provides, layers: c.asking(box=0 if c.query.box == ALL_BOXES else ALL_BOXES),
    "0": _ranked(0),
    **{str(k): _ranked(k - 1) for k in range(1, 6)},
}


def apply_key(controls: Controls, key: int, provides: frozenset[str], layers: int = 1) -> tuple[Controls, str | None]:
    """A key press -> new controls and an action (quit, snapshot, record, fullscreen, help) or None."""
    if key < 0:
        return controls, None
    char = chr(key & 0xFF)
    if char in ACTIONS:
        return controls, ACTIONS[char]
    rule = KEY_RULES.get(char)
    return (controls, None) if rule is None else (rule(controls, provides, layers), None)
