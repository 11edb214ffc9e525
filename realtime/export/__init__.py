"""The exporter: any classifier in (Keras, or any ONNX file), one Grad-CAM graph out.

    from realtime.export import ExportConfig, export
    result = export(ExportConfig(onnx=Path("resnet50.onnx"), gradients="pooled"))
    result.output  # the written graph

`gradcam-export` is the same road from a command line. The names are imported on first use, so the
exporter's parts stay light to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.export.pipeline import ExportConfig, ExportError, ExportResult, export

__all__ = ["ExportConfig", "ExportError", "ExportResult", "export"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from realtime.export import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'realtime.export' has no attribute {name!r}")
