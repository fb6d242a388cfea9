"""The drain benchmark's measurement, small, against the session's stack: it must seed, drain and
verify a book correctly. Correctness only: its timings are the benchmark's business (bench/README.md)."""

from __future__ import annotations

import pytest

from bench.drain import DrainConfig, run_drain
from shared.devstack.stack import Devstack


@pytest.mark.parametrize("dated", [False, True], ids=["undated", "dated"])
async def test_the_drain_benchmark_allocates_every_seeded_line_exactly_once_in_fifo_order(stack: Devstack, dated: bool) -> None:
    config = DrainConfig(lines=500, skus=5, receipts_per_sku=3, timeout_s=180, dated=dated)

    result = await run_drain(stack, config)
    # The other services dead-letter the run's events (its SKUs and orders are unknown to them):
    # let them finish before the next test measures anything.
    await stack.wait_quiescent(timeout=120)

    assert result.checks, "the run verified nothing"
    assert result.correct, {name: ok for name, ok in result.checks.items() if not ok} | {"problems": result.problems}
    assert (result.lines, len(result.skus), result.receipts) == (500, 5, 15)
    assert result.events >= result.lines  # a line split across two receipts gets two events
    assert result.anchor.lines == result.lines and result.anchor.units == result.units
    assert result.lines_per_s > 0 and result.latency_ms["p50"] <= result.latency_ms["p99"]
    assert result.lines_dated == (result.lines if dated else 0)  # dated: the receipts' purchase orders cover every line
