"""The one way to open an engine from what a user wrote: a graph's path, or a served model's address."""

from __future__ import annotations

from pathlib import Path

from realtime.engines.local import LocalEngine
from realtime.engines.protocol import Engine
from realtime.engines.providers import EngineOptions
from realtime.engines.remote import RemoteEngine, is_remote


def model_location(text: str) -> Path | str:
    """A --model value: a served model's address as written, a local graph as a path."""
    return text if is_remote(text) else Path(text)


def open_engine(model: str | Path, options: EngineOptions | None = None) -> Engine:
    """A local graph's LocalEngine, or a RemoteEngine for grpc:// and http:// addresses."""
    return RemoteEngine(str(model), options) if is_remote(model) else LocalEngine(model, options)
