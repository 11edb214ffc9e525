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


def test_detector_recipe_runs_and_its_files_go_through_the_import(tmp_path: Path) -> None:
    """The shipped detectors' recipe, a few steps: torch only (no Ultralytics), exported by gradcam-export --onnx
    into detector graphs the runtime opens."""
    pytest.importorskip("torch")
    from realtime.contract import DetectorInfo
    from realtime.engines.opening import open_engine

    argv = [sys.executable, str(ROOT / "scripts" / "train_demo_detector.py"), "--quick", "--out", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    recipe = (ROOT / "scripts" / "train_demo_detector.py").read_text()
    assert "import ultralytics" not in recipe and "from ultralytics" not in recipe  # its own code, its own weights
    for name in ("biased", "fair"):
        engine = open_engine(tmp_path / f"{name}_detector.onnx", EngineOptions(providers="cpu", warmup=0))
        assert isinstance(engine.info, DetectorInfo) and tuple(engine.info.labels) == scenes.CLASSES
        assert engine.info.strides == (16, 32)
