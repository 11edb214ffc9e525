"""The one way to open an engine from what a user wrote: a graph's path, or a served model's address."""

from __future__ import annotations

from pathlib import Path

from realtime import contract
from realtime.engines.detector import DetectorEngine
from realtime.engines.graph_file import open_graph
from realtime.engines.local import LocalEngine
from realtime.engines.protocol import Engine
from realtime.engines.providers import EngineOptions
from realtime.engines.remote import RemoteEngine, is_remote


def model_location(text: str) -> Path | str:
    """A --model value: a served model's address as written, a local graph as a path."""
    return text if is_remote(text) else Path(text)


def open_engine(model: str | Path, options: EngineOptions | None = None) -> Engine:
    """A RemoteEngine for grpc:// and http:// addresses; for a local file, the engine of what it explains
    (a classifier's LocalEngine, a detector's DetectorEngine), the file opened once."""
    if is_remote(model):
        return RemoteEngine(str(model), options)
    options = options or EngineOptions()
    opened = open_graph(model, options)
    if opened.task == contract.TASK_DETECT:
        return DetectorEngine(model, options, opened)
    return LocalEngine(model, options, opened)
