"""Atomic writes: a file appears complete and checked, or not at all.

Everything goes to a temporary name in the destination folder and is moved
into place with os.replace, which is atomic on one filesystem. A SIGKILL
leaves at most a stale `*.onnx.tmp`, which the next export removes.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import onnx

T = TypeVar("T")
TMP_SUFFIX = ".onnx.tmp"
STALE_AFTER_S = 3600.0


def remove_stale(folder: Path, now: float | None = None) -> int:
    """Delete temporary files an earlier, killed export left behind (older than an hour)."""
    now = time.time() if now is None else now
    removed = 0
    for path in folder.glob(f"*{TMP_SUFFIX}") if folder.is_dir() else ():
        try:
            if now - path.stat().st_mtime > STALE_AFTER_S:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def save_checked(model: onnx.ModelProto, output: Path, check: Callable[[Path], T]) -> T:
    """Write `model` under a temporary name, run `check` on that file, and only then move it to `output`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(output.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=TMP_SUFFIX, dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        onnx.save_model(model, str(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the model is an ordinary file
        result = check(tmp)
        os.replace(tmp, output)
        return result
    finally:
        tmp.unlink(missing_ok=True)
