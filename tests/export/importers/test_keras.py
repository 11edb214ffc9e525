"""The Keras importer's quiet start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.commands import ROOT


def test_tensorflow_imports_without_its_cuda_driver_lines() -> None:
    pytest.importorskip("tensorflow")
    script = "from realtime.export.importers.keras import import_tensorflow; import_tensorflow()"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          check=False)  # fmt: skip
    assert proc.returncode == 0 and "cuda" not in proc.stderr.lower(), proc.stderr
