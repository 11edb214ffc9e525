"""The demo models' recipes run, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.sources import scenes
from tests.helpers.commands import ROOT


def test_training_script_runs(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    argv = [sys.executable, str(ROOT / "scripts" / "train_demo_models.py"), "--quick", "--out", str(tmp_path)]
    done = subprocess.run([*argv, "--only", "fair"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    engine = LocalEngine(tmp_path / "fair.onnx", EngineOptions(providers="cpu", warmup=0))
    assert engine.info.labels == scenes.CLASSES and engine.info.layer == "last_conv"
