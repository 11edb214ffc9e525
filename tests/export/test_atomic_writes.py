"""Exports that are stopped leave the old graph, and the next run cleans up."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.commands import ROOT


def test_a_killed_export_leaves_the_old_model_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    """SIGKILL at several moments: the destination is always the old file or a complete new one."""
    torch = pytest.importorskip("torch")
    sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
    ).eval()  # fmt: skip
    source = tmp_path / "m.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 32, 32), str(source), opset_version=17, dynamo=False)
    target = tmp_path / "out" / "model.onnx"
    target.parent.mkdir()
    target.write_bytes(b"the old, good model")
    argv = [sys.executable, "-m", "realtime.export.cli", "--onnx", str(source), "--output", str(target), "--quiet"]
    for delay in (0.5, 1.0, 1.5, 2.0, 2.5):
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        data = target.read_bytes()
        assert data == b"the old, good model" or _complete(target), f"broken file after a kill at {delay} s"
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)  # a normal run
    assert _complete(target)
    assert not list(target.parent.glob(".*tmp")), "stale temporary files were not removed"


def test_sigterm_during_an_export_removes_its_temporary_file(tmp_path: Path) -> None:
    from realtime.export.graph import writing

    script = (
        "import os, signal, sys, time, onnx\n"
        "from pathlib import Path\n"
        "from realtime.export import cli\n"
        "from realtime.export.graph import writing\n"
        "signal.signal(signal.SIGTERM, cli._interrupt)\n"
        "def slow(path):\n"
        "    print('checking', flush=True); time.sleep(30)\n"
        "try:\n"
        f"    writing.save_checked(onnx.ModelProto(), Path({str(tmp_path / 'x.onnx')!r}), slow)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "checking"
    assert list(tmp_path.glob(f"*{writing.TMP_SUFFIX}"))  # the temporary file exists while checking
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130
    assert not list(tmp_path.glob(f"*{writing.TMP_SUFFIX}")) and not (tmp_path / "x.onnx").exists()


def _complete(path: Path) -> bool:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception:
        return False
    return True
