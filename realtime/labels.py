"""Class names shipped with the package, so nothing is downloaded at run time."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in Keras/torchvision index order."""
    text = resources.files("realtime.data").joinpath("imagenet_labels.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise RuntimeError(f"realtime/data/imagenet_labels.txt has {len(names)} names, expected 1000")
    return names
