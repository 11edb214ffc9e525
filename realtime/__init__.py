"""Real-time Grad-CAM: where a model looks, at video rate, from one graph call per frame.

The front door, each name imported on first use (so `import realtime.contract` and the export tools
stay light):
- `GradCam`, `Explanation`: the Python API (realtime.api);
- `METHODS`: the CAM methods' names, in the order the m key cycles through them;
- `open_source`: a camera index, a video file, an image folder, a URL or a GStreamer pipeline as a source;
- `realtime.export.export(config)`: the exporter's front door (it needs the `export` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.api import Explanation, GradCam
    from realtime.sources.kinds import open_source

__version__ = "0.6.0"
__all__ = ["METHODS", "Explanation", "GradCam", "__version__", "open_source"]


def __getattr__(name: str) -> Any:
    if name in ("Explanation", "GradCam"):
        from realtime import api

        return getattr(api, name)
    if name == "METHODS":
        from realtime.maps.methods import METHODS

        return tuple(METHODS)
    if name == "open_source":
        from realtime.sources.kinds import open_source

        return open_source
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
