"""Optional test dependencies: skipped on a developer's machine without them, a failure in CI."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def needs(module: str) -> ModuleType:
    """Import an optional test dependency. .ci/run installs every extra, so a test that would silently skip
    there is a broken install: with CI set, a missing module fails instead."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)
