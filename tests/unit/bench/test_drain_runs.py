"""The drain benchmark reports the median of its runs, not whichever came last: which run that is,
and what the command line asks for."""

from __future__ import annotations

import pytest

from bench.drain import DrainConfig, DrainResult, median_run, parse_args
from bench.drain_book import Anchor
from bench.drain_step import AllocationStep


def run(elapsed_s: float) -> DrainResult:
    return DrainResult(
        config=DrainConfig(), tag="t", skus=["S"], lines=100, units=200, receipts=5, seed_s=0.0, quiesce_s=0.0,
        elapsed_s=elapsed_s, lines_per_s=100 / elapsed_s, events=100, duplicates=0, first_allocation_s=0.1,
        latency_ms={"p50": 1.0, "p99": 2.0, "max": 2.0}, anchor=Anchor(0.5, [0.5], 100, 200),
        step=AllocationStep(1.0, 100, 0.5), cpu_s={},
    )


def test_the_median_run_is_the_middle_drain_time_and_the_lower_middle_of_an_even_count() -> None:
    slow, middle, fast = run(9.0), run(7.0), run(5.0)
    assert median_run([fast, slow, middle]) is middle
    assert median_run([slow, fast]) is fast
    assert median_run([slow]) is slow


def test_against_anchor_plus_event_floor_adds_the_two_measured_parts() -> None:
    assert run(10.0).anchor_with_events_ratio == pytest.approx(10.0)  # 10 s against 0.5 s + 0.5 s


def test_three_runs_by_default_one_for_a_quick_smoke_and_never_none() -> None:
    assert parse_args([])[0].runs == 3
    assert parse_args(["--quick"])[0].runs == 1
    assert parse_args(["--runs", "5", "--dated"])[0] == DrainConfig(runs=5, dated=True)
    with pytest.raises(SystemExit):
        parse_args(["--runs", "0"])
