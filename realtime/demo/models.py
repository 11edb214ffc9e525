"""Where the bundled demo models live (inside the package, so `pip install .` ships them)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_MODELS = ("biased", "fair")


class DemoModelsMissingError(FileNotFoundError):
    """The package was installed without its demo models."""


def demo_model_paths() -> dict[str, Path]:
    """{'biased': path, 'fair': path} of the bundled ONNX files."""
    folder = Path(str(resources.files("realtime.demo").joinpath("models")))
    paths = {name: folder / f"{name}.onnx" for name in DEMO_MODELS}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise DemoModelsMissingError(
            f"demo models missing ({', '.join(missing)}); regenerate them with python scripts/train_demo_models.py"
        )
    return paths
