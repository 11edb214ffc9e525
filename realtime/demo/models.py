"""Where the bundled demo models live (inside the package, so `pip install .` ships them)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_MODELS = ("biased", "fair")


class DemoModelsMissingError(FileNotFoundError):
    """The package was installed without its demo models."""


DEMOS = ("classifiers", "detectors")  # what gradcam-live --demo shows: the classifier pair, or the detector pair
RECIPES = {"classifiers": "scripts/train_demo_models.py", "detectors": "scripts/train_demo_detector.py"}


def demo_model_paths(kind: str = "classifiers") -> dict[str, Path]:
    """{'biased': path, 'fair': path} of the bundled ONNX files: the classifiers, or the detectors."""
    folder = Path(str(resources.files("realtime.demo").joinpath("models")))
    suffix = "_detector" if kind == "detectors" else ""
    paths = {name: folder / f"{name}{suffix}.onnx" for name in DEMO_MODELS}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise DemoModelsMissingError(
            f"demo models missing ({', '.join(missing)}); regenerate them with python {RECIPES[kind]}"
        )
    return paths
