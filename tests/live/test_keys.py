"""Keys and the browser's controls: new values, never mutated, never a method the graph lacks."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.live.loop import Loop
from realtime.maps import methods
from realtime.maps.explain import maps_for
from realtime.maps.query import Query, targets_for
from realtime.outputs.browser.hub import ControlError, FrameHub
from realtime.outputs.controls import QUIT, SNAPSHOT, Controls, apply_key
from realtime.sources.group import SourceSet
from tests.helpers.commands import ROOT
from tests.helpers.sources import Numbered

FULL, POOLED = frozenset({"gradients"}), frozenset()  # what a full and a pooled graph provide


def test_keys_change_controls_and_never_mutate() -> None:
    start = Controls()
    after, action = apply_key(start, ord("m"), FULL)
    assert after.query.method == "gradcam++" and start.query.method == "gradcam" and action is None
    assert apply_key(start, ord("m"), POOLED)[0].query.method == "counterfactual"  # a pooled graph has two methods
    assert apply_key(start, ord("3"), FULL)[0].query.rank == 2
    assert apply_key(Controls(Query(class_name="dog", rank=2)), ord("0"), FULL)[0] == Controls()
    assert apply_key(start, ord("o"), FULL)[0].look.style == "tint" and start.look.style == "heat"
    assert apply_key(start, ord(" "), FULL)[0].look.frozen
    assert apply_key(start, ord("v"), FULL)[0].look.mirror and apply_key(start, ord("l"), FULL, 3)[0].query.layer == 1
    assert apply_key(start, ord("f"), FULL) == (start, "fullscreen") and apply_key(start, ord("x"), FULL) == (
        start,
        None,
    )
    assert apply_key(start, 27, FULL)[1] == QUIT and apply_key(start, ord("q"), FULL)[1] == QUIT
    assert apply_key(start, ord("s"), FULL)[1] == SNAPSHOT
    assert apply_key(start, -1, FULL) == (start, None)


def test_rank_key_explains_the_kth_class(small_models) -> None:
    engine = LocalEngine(small_models["full"], EngineOptions(providers="cpu", warmup=0))
    image = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    query = apply_key(Controls(), ord("2"), FULL)[0].query
    result = engine.run(image, [targets_for(query, None)])
    second = int(np.argsort(-result.logits[0])[1])
    assert int(result.classes[0, query.rank]) == second
    np.testing.assert_allclose(
        maps_for(result, 0, query, None)[0], result.cam[0, 1] / (result.cam[0, 1].max() + 1e-7), atol=1e-5
    )


def test_no_chooser_selects_a_method_the_graph_lacks(small_models) -> None:
    from realtime.api import GradCam

    pooled = LocalEngine(small_models["pooled"], EngineOptions(providers="cpu", warmup=0))
    assert pooled.provides == frozenset()  # channel weights only: no full gradients
    controls, seen = Controls(), set()
    for _ in range(2 * len(methods.METHODS)):  # the m key cycles only through what the graph can compute
        controls = apply_key(controls, ord("m"), pooled.provides)[0]
        seen.add(controls.query.method)
    assert seen == set(methods.usable_methods(pooled.provides)) == {"gradcam", "counterfactual"}
    refusals = []
    with pytest.raises(ControlError) as browser:  # the browser's control API
        FrameHub(pooled.info.labels, pooled.provides).request({"method": "gradcam++"})
    refusals.append(str(browser.value))
    with pytest.raises(methods.MethodNeedsGradientsError) as api:  # the Python API
        GradCam(small_models["pooled"], providers="cpu")(np.zeros((64, 64, 3), np.uint8), method="hirescam")
    refusals.append(str(api.value))
    with SourceSet([Numbered(2)]) as sources, pytest.raises(methods.MethodNeedsGradientsError) as loop:
        Loop(pooled, sources, Controls(Query(method="layercam")))  # a caller's starting method
    refusals.append(str(loop.value))
    assert "start with one of gradcam, counterfactual" in refusals[-1]
    for message in refusals:
        assert "--gradients full" in message and "\n" not in message, message


def test_the_loop_has_no_method_fallback() -> None:
    """The loop and its parts neither catch a method error nor replace the method they were given."""
    for name in ("loop", "scheduler", "inference", "meters"):
        tree = ast.parse((ROOT / "realtime" / "live" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                assert "MethodNeedsGradientsError" not in ast.unparse(node.type), f"{name}.py:{node.lineno}"
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(("replace", "asking")):
                assert "method" not in {k.arg for k in node.keywords}, f"{name}.py:{node.lineno}"
