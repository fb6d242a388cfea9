"""The flash sale benchmark's measurement, small, against the session's stack: every order it posts
must settle with no unit sold twice, units conserved and shipments grouped as promised.
Correctness only: its timings are the benchmark's business (bench/README.md)."""

from __future__ import annotations

from bench.flash import FlashConfig, run_flash_sale
from shared.devstack.stack import Devstack


async def test_a_small_flash_sale_settles_every_order_without_overselling(stack: Devstack) -> None:
    config = FlashConfig(orders=200, connections=8, warm_up_orders=0, anchor=False, measure=False, settle_timeout_s=120)

    result = await run_flash_sale(stack, config)
    await stack.wait_quiescent(timeout=120)  # the notifier's messages for the run, before the next test measures anything

    assert result.checks, "the run verified nothing"
    assert result.correct, {name: ok for name, ok in result.checks.items() if not ok} | {"problems": result.problems}
    assert result.posting.accepted == 200 and result.settle_s is not None
    states = result.line_states
    assert states.get("reserved", 0) > 0 and states.get("backordered", 0) > 0, states  # stock ran out: real work both ways
    assert sum(states.values()) == result.lines and result.shipments > 0
    assert sum(result.stock.values()) < sum(result.demand.values())  # a sale: less on hand than asked for
    assert result.anchor_before is None and not result.cpu_s  # neither A2 nor CPU when asked not to
