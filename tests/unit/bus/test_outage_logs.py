"""The outage tracker and the repeat filter without I/O: a fake clock, records built by hand."""

from __future__ import annotations

import logging

import pytest

from shared.logs import OutageTracker, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(message: str = "Unable connect to node with id %s: %s", *args: object, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, args or (1, "refused"), None)


def test_an_outage_is_logged_when_it_starts_and_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tracker = OutageTracker("database", logging.getLogger("test.outage"), clock)
    caplog.set_level(logging.INFO, "test.outage")
    assert not tracker.recovered(), "no outage was open"

    assert tracker.failed(ConnectionRefusedError(111, "Connect call failed"))
    for _ in range(40):
        clock.now += 0.3
        assert not tracker.failed(OSError("again"))
    assert tracker.open and tracker.failures == 41
    clock.now += 0.5
    assert tracker.recovered("requests refused")

    assert (tracker.last_duration_s, tracker.last_failures) == (pytest.approx(12.5), 41)
    assert not tracker.open and tracker.failures == 0
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("database unreachable: ConnectionRefusedError: [Errno 111] Connect call failed")
    assert lines[1] == "database reachable again after 12.5 s (41 requests refused during the outage)"


def test_a_second_outage_starts_its_own_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tracker = OutageTracker("database", logging.getLogger("test.outage"), clock)
    tracker.failed(OSError("down"))
    clock.now += 2
    tracker.recovered()
    clock.now += 100
    assert tracker.failed("server shutting down")
    tracker.failed("server shutting down")
    clock.now += 3
    tracker.recovered()
    assert (tracker.last_duration_s, tracker.last_failures) == (3, 2)


def flood(repeat_filter: RepeatFilter, clock: Clock, seconds: float, per_second: int = 100) -> int:
    """Records at a steady rate; returns how many passed."""
    passed = 0
    for _ in range(int(seconds * per_second)):
        clock.now += 1 / per_second
        passed += repeat_filter.filter(record())
    return passed


def test_repeats_beyond_the_burst_are_suppressed_and_summarised_with_a_doubling_window() -> None:
    clock = Clock()
    summaries: list[logging.LogRecord] = []
    repeat_filter = RepeatFilter(burst=5, window_s=10, max_window_s=60, clock=clock, sink=summaries.append)

    assert flood(repeat_filter, clock, 9.9) == 5  # the burst passes, the rest is held back
    assert summaries == []
    assert flood(repeat_filter, clock, 0.2) == 0
    assert len(summaries) == 1
    _template, suppressed, seconds = summaries[0].args  # type: ignore[misc]
    assert 990 <= suppressed <= 996 and round(seconds) == 10  # 100 a second for 10 s, less the burst
    assert summaries[0].getMessage() == f"'Unable connect to node with id %s: %s' repeated {suppressed} times in the last 10 s"
    assert summaries[0].name == "aiokafka" and summaries[0].levelno == logging.WARNING
    assert repeat_filter.filter(summaries[0]), "a summary is never suppressed itself"

    flood(repeat_filter, clock, 290)  # windows of 20, 40, 60, 60, 60 s: nothing passes, one line each
    windows = [round(float(s.args[2])) for s in summaries[1:]]  # type: ignore[index]
    assert windows == [20, 40, 60, 60, 60], windows


def test_a_summary_comes_after_the_flood_stopped_when_anything_else_is_logged() -> None:
    clock = Clock()
    summaries: list[logging.LogRecord] = []
    repeat_filter = RepeatFilter(burst=2, window_s=10, clock=clock, sink=summaries.append)
    flood(repeat_filter, clock, 1, per_second=10)
    clock.now += 30
    assert repeat_filter.filter(record("something else"))
    assert [s.args[1] for s in summaries] == [8]  # type: ignore[index]


def test_quiet_records_pass_and_a_stopped_flood_is_forgotten() -> None:
    clock = Clock()
    summaries: list[logging.LogRecord] = []
    repeat_filter = RepeatFilter(burst=3, window_s=10, clock=clock, sink=summaries.append)
    for _ in range(3):  # under the burst: all pass, no summary
        clock.now += 2
        assert repeat_filter.filter(record())
    flood(repeat_filter, clock, 1, per_second=10)
    clock.now += 10.5
    assert repeat_filter.filter(record("other")) and len(summaries) == 1
    clock.now += 25  # a whole window without a repeat: forgotten, the burst is back
    repeat_filter.filter(record("other"))
    assert all(repeat_filter.filter(record()) for _ in range(3))


def test_same_template_other_logger_or_other_template_are_counted_apart() -> None:
    clock = Clock()
    repeat_filter = RepeatFilter(burst=1, window_s=10, clock=clock)
    assert repeat_filter.filter(record(name="aiokafka"))
    assert repeat_filter.filter(record(name="bus.relay"))
    assert repeat_filter.filter(record("Unable to update metadata from %s", [0]))
    assert not repeat_filter.filter(record(name="aiokafka"))  # the arguments differ, the template is the same
