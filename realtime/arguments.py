"""Checks shared by the command lines and the Python API: one function per kind of argument.

Each takes the value and the name to say in the message (`--top-k` on a command line, `top_k` in
the API) and returns the value, or raises ValueError with one line that says what would work.
The command lines wrap them as argparse types, so a bad value is refused before any model loads.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from realtime import contract

MAX_THREADS = 256  # onnxruntime starts a thread per count: 100,000 would hang before the first frame


def top_k(value: object, name: str = "top_k") -> int:
    """How many classes to explain: an int from 1 to the graph's ranking (contract.MAX_TARGETS)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} {value!r} must be a whole number from 1 to {contract.MAX_TARGETS}")
    if not 1 <= value <= contract.MAX_TARGETS:
        raise ValueError(f"{name} {value} must be from 1 to {contract.MAX_TARGETS} (the graph ranks that many classes)")
    return value


def threads(value: object, name: str = "threads") -> int | None:
    """CPU threads for onnxruntime: None (all cores) or 1 to MAX_THREADS."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        cores = os.cpu_count() or 1
        raise ValueError(
            f"{name} {value!r} must be a whole number from 1 to {MAX_THREADS} (this machine has {cores} cores)"
        )
    return value


def not_an_input(output: Path, inputs: dict[str, Path | None], name: str = "--output") -> None:
    """Refuse an output that is one of the inputs (the same file by any path): writing it would lose the input."""
    for what, source in inputs.items():
        if source is None:
            continue
        same = output.exists() and source.exists() and os.path.samefile(output, source)
        if same or output.resolve() == source.resolve():
            raise ValueError(f"{name} {output} is the {what}; write to another path")


def argparse_type(check: Callable[[object, str], object], flag: str) -> Callable[[str], object]:
    """`check` as an argparse type for `flag`: the text parsed as an int first."""

    def parse(text: str) -> object:
        try:
            value: object = int(text)
        except ValueError:
            value = text
        try:
            return check(value, flag)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{flag} ")) from None

    return parse
