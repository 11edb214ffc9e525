"""What the presenter steers, as one frozen value, and the keys that replace it.

The same controls apply to every panel: a class is named, not numbered, so each model
resolves it through its own labels.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from realtime import cam, overlay

QUIT, SNAPSHOT, RECORD = "quit", "snapshot", "record"
FULLSCREEN, HELP = "fullscreen", "help"
WINDOW_ACTIONS = {"f": FULLSCREEN, "h": HELP}  # the window's own: they change how it shows, not what

KEYS: Mapping[str, str] = {  # the README's key table, and the window's help
    "q / Esc": "quit",
    "space": "freeze the frame (keep explaining it)",
    "m": "next method",
    "o": "next overlay style",
    "l": "next explained layer (graphs exported with several --layer)",
    "1-5": "explain the class ranked 1st-5th",
    "0": "back to the top-1 class",
    "s": "snapshot (PNG in --snapshots)",
    "r": "start / stop recording",
    "v": "mirror the view (the model sees the mirrored frame)",
    "f": "full screen on / off",
    "h": "show / hide this list of keys",
}


class ClassNameError(ValueError):
    """--class names no class of a model."""


@dataclass(frozen=True)
class Controls:
    """The method, the class to explain, how maps look; one value for every panel."""

    method: str = "gradcam"
    class_name: str | None = None  # a class by label or id; None: the ranked class below
    rank: int = 0  # 0: top-1, k: the class ranked k+1-th
    top_k: int = 1  # maps shown side by side per model
    alpha: float = overlay.DEFAULT_ALPHA
    smooth: float = 0.0  # EMA weight of the previous map, 0..1
    frozen: bool = False
    style: str = overlay.DEFAULT_STYLE
    layer: int = 0  # which of the graph's explained layers (0: the first --layer)
    class_id: int | None = None  # a class picked by id in the first model's labels (the browser); the others
    # match it by name
    mirror: bool = False  # frames flipped left-right before the model and the drawing


def _normal(label: str) -> str:
    return label.lower().replace("_", " ").strip()


def resolve_class(
    value: str | None, labels: Sequence[str], model: str = "this model", name: str = "--class"
) -> int | None:
    """A class given as an id or a name (case and _/space insensitive) -> its id in `labels`; `name` is
    what the message calls the argument (`--class` on a command line, `target` in the API)."""
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        class_id = int(value)
        if not 0 <= class_id < len(labels):
            raise ClassNameError(f"{name} {value}: ids run from 0 to {len(labels) - 1} in {model}")
        return class_id
    ids = {_normal(label): i for i, label in enumerate(labels)}
    key = _normal(value)
    if key in ids:
        return ids[key]
    close = difflib.get_close_matches(key, list(ids), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ClassNameError(f"{name} {value!r} is not a class of {model}{hint}")


def class_id_in(controls: Controls, labels: Sequence[str], first: bool = True) -> int | None:
    """The controls' class in one model's labels; None (explain by rank) when that model lacks it.

    A class picked by id stays that id in the first model; the others find it by name, and only by
    name (a label "7" is not id 7), so duplicate or numeric labels never switch the class."""
    if controls.class_id is not None and controls.class_name is not None:
        if first:
            return controls.class_id if 0 <= controls.class_id < len(labels) else None
        wanted = _normal(controls.class_name)
        return next((i for i, label in enumerate(labels) if _normal(label) == wanted), None)
    try:
        return resolve_class(controls.class_name, labels)
    except ClassNameError:
        return None


def targets_for(controls: Controls, class_id: int | None) -> list[int]:
    """The graph's `targets` row: the explained class first, then the ranked ones for top-k tiles."""
    if class_id is not None:
        return [class_id] + [-1] * (controls.top_k - 1)
    return [-1] * max(controls.top_k, controls.rank + 1)


def explained_columns(controls: Controls, class_id: int | None) -> list[int]:
    """Which columns of the graph's outputs the panels show."""
    if controls.top_k > 1:
        return list(range(controls.top_k))
    return [0] if class_id is not None else [controls.rank]


def _next(options: Sequence[str], current: str) -> str:
    index = options.index(current) if current in options else -1
    return options[(index + 1) % len(options)]


def apply_key(controls: Controls, key: int, provides: frozenset[str], layers: int = 1) -> tuple[Controls, str | None]:
    """A key press -> new controls and an action (quit, snapshot, record) or None."""
    if key < 0:
        return controls, None
    char = chr(key & 0xFF)
    actions = {"q": QUIT, "\x1b": QUIT, "s": SNAPSHOT, "r": RECORD}
    if char in actions:
        return controls, actions[char]
    if char == " ":
        return replace(controls, frozen=not controls.frozen), None
    if char == "v":
        return replace(controls, mirror=not controls.mirror), None
    if char in WINDOW_ACTIONS:
        return controls, WINDOW_ACTIONS[char]
    if char == "m":
        return replace(controls, method=_next(cam.usable_methods(provides), controls.method)), None
    if char == "l":
        return replace(controls, layer=(controls.layer + 1) % max(1, layers)), None
    if char == "o":
        return replace(controls, style=_next(list(overlay.STYLES), controls.style)), None
    if char in "12345":
        return replace(controls, class_name=None, class_id=None, rank=int(char) - 1), None
    if char == "0":
        return replace(controls, class_name=None, class_id=None, rank=0), None
    return controls, None
