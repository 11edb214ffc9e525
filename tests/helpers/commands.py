"""Running the command lines in this process, and what their refusals must look like."""

from __future__ import annotations

import contextlib
import importlib
import io
import subprocess
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository


def run_in_process(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A command line's `main` run in this process (no interpreter start-up): its exit code and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = importlib.import_module(module).main(list(args))
        except SystemExit as exc:  # argparse's refusals
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess([module, *args], code, "", err.getvalue())


def one_line_refusal(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit code 2, no traceback, and one line from the tool that says what to do: that line."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("gradcam-")]
    assert len(lines) == 1, proc.stderr  # argparse's usage aside, one line says what to do
    return lines[0]


def file_size_limit(limit: int) -> Callable[[], None]:
    """For subprocess's preexec_fn: the disk "fills" after `limit` bytes of any file the child writes
    (writes past it fail with EFBIG, as on a full disk, instead of killing the child)."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply
