"""A served model's engine under faults a real server will not make on demand (a client double answering from
the local graph, tests/helpers/fake_triton.py): a client bound to its thread, a slow and a silent server, NaN
and missing outputs. Each of these broke the engine before: made-up results, a frozen view, a crash."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from realtime.engines import remote
from realtime.engines.calls import BadResultError
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.engines.remote import RemoteEngine, ServerLostError
from tests.helpers.fake_triton import FakeModule, Faults


@pytest.fixture
def served(small_models, monkeypatch) -> tuple[Faults, Path]:
    """The small classifier behind a fake http:// server; the faults to change while it runs."""
    faults = Faults()
    module = FakeModule(small_models["full"], faults)
    monkeypatch.setattr(remote, "_client", lambda address: (module, lambda: module.InferenceServerClient(address.host)))
    monkeypatch.setattr(remote, "REQUEST_TIMEOUT_S", 0.5)
    monkeypatch.setattr(remote, "RETRY_S", 0.2)
    return faults, small_models["full"]


def _images(n: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_a_thread_bound_client_answers_from_every_thread_and_the_api_from_a_pool(served) -> None:
    faults, graph = served
    engine = RemoteEngine("http://fake:8000/small", EngineOptions(warmup=1))  # made on this thread
    local = LocalEngine(graph, EngineOptions(providers="cpu", warmup=0))
    with ThreadPoolExecutor(4) as pool:  # the inference thread's case, four times over
        results = list(pool.map(lambda i: engine.run(_images(2, i), [[-1, 1]]), range(8)))
    for i, got in enumerate(results):
        want = local.run(_images(2, i), [[-1, 1]])
        assert not got.lost and np.array_equal(got.classes, want.classes)
        np.testing.assert_allclose(got.cam, want.cam, atol=1e-6)
    from realtime import GradCam

    cam = GradCam("http://fake:8000/small", warmup=0)
    frames = [np.random.default_rng(i).integers(0, 256, (48, 80, 3), dtype=np.uint8) for i in range(6)]
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(cam, frames))
    assert [a.classes for a in answers] == [cam(f).classes for f in frames]
    assert len(set(faults.calls)) == 1  # every call on the engine's own client thread


def test_a_slow_server_is_lost_at_the_deadline_and_the_view_never_waits_on_it_again(served) -> None:
    faults, _ = served
    engine = RemoteEngine("http://fake:8000/small", EngineOptions(warmup=1))
    faults.delay_s = 30.0  # answers byte by byte, or not at all
    start = time.monotonic()
    first = engine.run(_images(), [[-1]])
    assert first.lost and time.monotonic() - start < remote.REQUEST_TIMEOUT_S + 0.3  # the whole answer's deadline
    waits = []
    for _ in range(20):  # while lost, every frame comes back at once: probes run in the background
        t0 = time.monotonic()
        assert engine.run(_images(), [[-1]]).lost
        waits.append(time.monotonic() - t0)
        time.sleep(0.05)
    assert max(waits) < 0.05, waits
    faults.delay_s = 0.0  # back
    deadline = time.monotonic() + 5
    while engine.run(_images(), [[-1]]).lost:
        assert time.monotonic() < deadline, "the engine did not notice the server came back"
        time.sleep(0.05)


def test_closing_ends_a_call_waiting_on_a_silent_server_at_once(served) -> None:
    faults, _ = served
    engine = RemoteEngine("http://fake:8000/small", EngineOptions(warmup=1))
    faults.delay_s = 30.0
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(engine.run, _images(), [[-1]])
        time.sleep(0.1)
        t0 = time.monotonic()
        engine.close()
        assert waiting.result(timeout=1.0).lost == "closing" and time.monotonic() - t0 < 0.3


def test_the_api_says_lost_instead_of_making_up_an_answer(served) -> None:
    from realtime import GradCam

    faults, _ = served
    cam = GradCam("http://fake:8000/small", warmup=0)
    frame = np.zeros((48, 64, 3), np.uint8)
    assert cam(frame).maps.max() > 0
    faults.delay_s = 30.0
    with pytest.raises(ServerLostError, match="check the server"):
        cam(frame)


@pytest.mark.parametrize("fault", ["nan", "missing"])
def test_a_server_answer_that_breaks_the_contract_is_a_bad_result_not_a_crash(served, fault: str) -> None:
    faults, _ = served
    engine = RemoteEngine("http://fake:8000/small", EngineOptions(warmup=1))
    if fault == "nan":
        faults.nan = True
    else:
        faults.missing = "cam"
    with pytest.raises(BadResultError, match="bad result") as caught:
        engine.run(_images(), [[-1]])
    assert "\n" not in str(caught.value)
    from realtime.live.inference import infer
    from realtime.maps.query import Query
    from realtime.sources.frame import Frame

    step = infer([engine], [Frame(0, np.zeros((48, 64, 3), np.uint8), 0.0)], Query(), "squash")
    assert step.results[0].lost == "bad result"  # the panel says so; nothing is drawn from the numbers
