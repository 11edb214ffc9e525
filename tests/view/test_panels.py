"""Panels: models told apart in their captions."""

from __future__ import annotations

from realtime.demo.models import demo_model_paths
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions


def test_panels_of_one_model_at_two_precisions_are_told_apart(tmp_path) -> None:
    import shutil

    from realtime.view.panels import panel_names

    fair = demo_model_paths()["fair"]
    copy = tmp_path / "fair_again.onnx"
    shutil.copyfile(fair, copy)
    engines = [LocalEngine(p, EngineOptions(providers="cpu", warmup=0)) for p in (fair, copy)]
    assert panel_names(engines) == ["fair fp32 (fair.onnx)", "fair fp32 (fair_again.onnx)"]
    int8 = type("E", (), {"info": type("I", (), {"model_name": "fair", "precision": "int8 (all)"})(), "path": copy})()
    assert panel_names([engines[0], int8]) == ["fair fp32", "fair int8 (all)"]  # type: ignore[list-item]
    biased = LocalEngine(demo_model_paths()["biased"], EngineOptions(providers="cpu", warmup=0))
    assert panel_names([biased, engines[0]]) == ["biased", "fair"]
