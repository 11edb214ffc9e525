"""The bundled demo models: small, and following the contract."""

from __future__ import annotations

from realtime.demo.models import demo_model_paths
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.sources import scenes


def test_committed_models_are_small_and_follow_the_contract() -> None:
    for path in demo_model_paths().values():
        assert path.stat().st_size < 3 * 1024 * 1024
        engine = LocalEngine(path, EngineOptions(providers="cpu", warmup=0))
        assert engine.info.labels == scenes.CLASSES and engine.has_gradients
        assert engine.info.preprocessing == "tf"
