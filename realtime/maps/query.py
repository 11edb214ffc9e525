"""What to explain, as one frozen value: the method, the class and how many, the layer.

A class is named, not numbered, so each model resolves it through its own labels; a class picked by
id (a click in the browser) stays that id in the first model, and the others find it by name.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass


class ClassNameError(ValueError):
    """--class names no class of a model."""


@dataclass(frozen=True)
class Query:
    """The method, the class to explain, how many classes side by side, and the layer."""

    method: str = "gradcam"
    class_name: str | None = None  # a class by label or id; None: the ranked class below
    class_id: int | None = None  # a class picked by id in the first model's labels (the browser); the others
    # match it by name
    rank: int = 0  # 0: top-1, k: the class ranked k+1-th
    top_k: int = 1  # maps shown side by side per model
    layer: int = 0  # which of the graph's explained layers (0: the first --layer)
    box: int = 0  # detectors: the kept box to show, by rank (0: the best); ALL_BOXES: every explained box's
    # map fused


ALL_BOXES = -1
EXPLAINED_BOXES = 8  # detectors: the best boxes explained each frame (a few tiny windows each), unless more asked


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


def class_id_in(query: Query, labels: Sequence[str], first: bool = True) -> int | None:
    """The query's class in one model's labels; None (explain by rank) when that model lacks it.

    A class picked by id stays that id in the first model; the others find it by name, and only by
    name (a label "7" is not id 7), so duplicate or numeric labels never switch the class."""
    if query.class_id is not None and query.class_name is not None:
        if first:
            return query.class_id if 0 <= query.class_id < len(labels) else None
        wanted = _normal(query.class_name)
        return next((i for i, label in enumerate(labels) if _normal(label) == wanted), None)
    try:
        return resolve_class(query.class_name, labels)
    except ClassNameError:
        return None


def targets_for(query: Query, class_id: int | None) -> list[int]:
    """The graph's `targets` row: the explained class first, then the ranked ones for top-k tiles."""
    if class_id is not None:
        return [class_id] + [-1] * (query.top_k - 1)
    return [-1] * max(query.top_k, query.rank + 1)


def box_targets(query: Query, class_id: int | None, max_boxes: int) -> list[int]:
    """A detector's `targets` row: column k explains the k-th best kept box, of the query's class where it
    names one (-1: any class); enough columns for the box shown."""
    count = min(max_boxes, max(EXPLAINED_BOXES, query.box + 1))
    return [-1 if class_id is None else class_id] * count


def explained_columns(query: Query, class_id: int | None) -> list[int]:
    """Which columns of the graph's outputs the panels show."""
    if query.top_k > 1:
        return list(range(query.top_k))
    return [0] if class_id is not None else [query.rank]
