import pytest

from realtime.meter import DurationMeter, RateMeter


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
