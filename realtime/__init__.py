"""Real-time Grad-CAM: `from realtime import GradCam` for the Python API (see realtime.api).

The API is imported on first use, so `import realtime.contract` and the export tools stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.api import Explanation, GradCam

__all__ = ["Explanation", "GradCam"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from realtime import api

        return getattr(api, name)
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
