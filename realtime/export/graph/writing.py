"""Atomic writes: a file appears complete and checked, or not at all.

Everything goes to a temporary name in the destination folder and is moved
into place with os.replace, which is atomic on one filesystem. A SIGKILL
leaves at most a `.NAME.PID.onnx.tmp`, which the next export removes once
that process is gone; SIGTERM and Ctrl-C remove it on the way out.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import onnx

from realtime.files import remove_stale

T = TypeVar("T")
TMP_SUFFIX = ".onnx.tmp"


def save_checked(model: onnx.ModelProto, output: Path, check: Callable[[Path], T]) -> T:
    """Write `model` under a temporary name, run `check` on that file, and only then move it to `output`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(output.parent, TMP_SUFFIX)
    tmp = output.with_name(f".{output.stem}.{os.getpid()}{TMP_SUFFIX}")
    try:
        onnx.save_model(model, str(tmp))
        result = check(tmp)
        os.replace(tmp, output)
        return result
    finally:
        tmp.unlink(missing_ok=True)
