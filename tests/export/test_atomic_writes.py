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


def test_an_export_beside_a_planted_fifo_and_symlink_finishes_and_writes_through_neither(
    tmp_path: Path, tiny_onnx: Path
) -> None:
    """The exporter's temporary graph had a guessable name (.NAME.PID.onnx.tmp): a FIFO there hung it, a
    symlink there made it write through to someone else's file. Now the name is random and created new."""
    import os
    import threading

    from realtime.export.pipeline import ExportConfig, export

    out = tmp_path / "graph.onnx"
    os.mkfifo(tmp_path / f".graph.{os.getpid()}.onnx.tmp")
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file")
    (tmp_path / f".graph.{os.getpid() + 1}.onnx.tmp").symlink_to(victim)
    done: list[Path] = []
    config = ExportConfig(onnx=tiny_onnx, output=out, quiet=True)
    worker = threading.Thread(target=lambda: done.append(export(config).output), daemon=True)
    worker.start()
    worker.join(120)
    assert done == [out], "the export blocked on the planted FIFO"
    assert victim.read_text() == "someone else's file" and out.stat().st_size > 0


def test_two_exports_of_a_graph_over_the_inline_limit_leave_one_that_reads_its_own_weights(
    tmp_path: Path, small_models, monkeypatch
) -> None:
    """External data (graphs over 2 GB; the limit lowered here): two writers of one output, interleaved so that
    both data files are in place before either graph moves. Each used to delete every other data file, so the
    last graph could point at a file the other writer had removed; now each removes only the data of the graph
    it replaced."""
    import threading

    import numpy as np
    import onnx

    from realtime.export.checks.run import run_onnx
    from realtime.export.graph import writing

    monkeypatch.setattr(writing, "INLINE_LIMIT", 1)
    monkeypatch.setattr(writing, "EXTERNAL_THRESHOLD", 64)
    both_placed = threading.Barrier(2, timeout=30)
    real_replace = writing.os.replace

    def replace(source: object, target: object) -> None:
        real_replace(source, target)
        if str(target).endswith(".data"):
            both_placed.wait()  # the other writer's data is in place before either graph moves

    monkeypatch.setattr(writing.os, "replace", replace)
    model = onnx.load(str(small_models["full"]))
    out = tmp_path / "big.onnx"
    errors: list[BaseException] = []

    def write() -> None:
        try:
            writing.save_checked(onnx.ModelProto.FromString(model.SerializeToString()), out, lambda path: None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    writers = [threading.Thread(target=write) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert not errors, errors
    images = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    got, want = run_onnx(out, images, [[-1]]), run_onnx(small_models["full"], images, [[-1]])
    np.testing.assert_allclose(got["cam"], want["cam"], atol=1e-6)
    assert len(list(tmp_path.glob("big.onnx.*.data"))) >= 1
