"""Rate and duration meters, and the loop's meters behind one stats()."""

from __future__ import annotations

import pytest

from realtime.timing import DurationMeter, RateMeter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_intervals_over_span_not_events_over_span() -> None:
    clock = FakeClock()
    meter = RateMeter(window=10, clock=clock)
    for t in (0.0, 0.1, 0.2, 0.3):
        clock.now = t
        meter.tick()
    assert meter.rate == pytest.approx(10.0)  # 3 intervals in 0.3 s, not 4 / 0.3
    assert meter.count == 4


def test_rate_uses_a_sliding_window() -> None:
    clock = FakeClock()
    meter = RateMeter(window=3, clock=clock)
    for t in (0.0, 1.0, 2.0, 2.1, 2.2):
        clock.now = t
        meter.tick()
    assert meter.rate == pytest.approx(10.0)


def test_rate_needs_two_events() -> None:
    meter = RateMeter(clock=FakeClock())
    assert meter.rate == 0.0
    meter.tick()
    assert meter.rate == 0.0
    with pytest.raises(ValueError):
        RateMeter(window=1)


def test_duration_meter_median_in_ms() -> None:
    meter = DurationMeter(window=3)
    for s in (0.500, 0.010, 0.020, 0.090):
        meter.add_seconds(s)
    assert meter.ms == pytest.approx(20.0)  # the window is the last three; their median
    assert meter.total == 4


def test_the_loops_meters_book_every_rate_and_time_behind_one_stats() -> None:
    from types import SimpleNamespace

    from realtime.live.meters import Meters

    clock = FakeClock()
    meters = Meters(engines=2, camera_rate=True, clock=clock)
    done = SimpleNamespace(results=(SimpleNamespace(seconds=0.02), SimpleNamespace(seconds=0.03)), resize_s=0.004,
                           resize_cpu_s=0.001)  # fmt: skip
    for t in (0.0, 0.1, 0.2):
        clock.now = t
        meters.inferred(done)  # type: ignore[arg-type]
        meters.aged(3)
        clock.now = t + 0.01
        meters.presented(drawn_at=t, captured_at=t - 0.04)
    stats = meters.stats()
    assert meters.displayed == stats.displayed == 3 and stats.display_fps == pytest.approx(10.0)
    assert stats.model_ms == pytest.approx(50.0) and stats.engine_ms == pytest.approx((20.0, 30.0))
    assert stats.latency_ms == pytest.approx(50.0) and stats.stage_ms["sink"] == pytest.approx(10.0)
    assert stats.stage_ms["resize"] == pytest.approx(4.0) and stats.stage_cpu_ms["resize"] == pytest.approx(1.0)
    assert stats.model_fps == pytest.approx(10.0) and stats.map_age == 3
    at_model_rate = Meters(engines=1, camera_rate=False, clock=clock)
    at_model_rate.aged(3)
    assert at_model_rate.stats().model_fps is None and at_model_rate.stats().map_age is None  # one rate: nothing apart
    meters.presented(drawn_at=clock.now, captured_at=None)  # a frozen frame: its capture time says nothing
    assert meters.stats().latency_ms == pytest.approx(50.0)
