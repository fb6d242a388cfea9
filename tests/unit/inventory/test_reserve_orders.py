"""Unit tests of the set-based reservation: a run of placed orders decided at once must decide as
the same orders would one at a time, in their order (first come, first served, no oversell)."""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID, uuid4

from hypothesis import given
from hypothesis import strategies as st

from services.inventory.domain.stock import (
    Buckets,
    LineDecision,
    RequestedLine,
    SkuPolicy,
    repeats_line_no,
    reservation_deltas,
    reserve_order,
    reserve_orders,
    shortfall_numbers,
)
from shared.events import RejectionReason


def order(*lines: tuple[str, int]) -> tuple[UUID, list[RequestedLine]]:
    return uuid4(), [RequestedLine(n, sku, qty) for n, (sku, qty) in enumerate(lines, 1)]


def test_orders_competing_for_little_stock_are_served_in_their_order() -> None:
    run = [order(("A", 3)), order(("A", 3)), order(("A", 2)), order(("A", 1))]
    decided = reserve_orders(run, {"A": SkuPolicy("A")}, {"A": Buckets(available=5)})
    assert [[(d.reserved, d.short) for d in decisions] for decisions in decided] == [[(3, 0)], [(2, 1)], [(0, 2)], [(0, 1)]]
    assert reservation_deltas([d for decisions in decided for d in decisions]) == {
        "A": Buckets(available=-5, reserved=5, backordered=4)
    }


def test_a_later_order_sees_the_backorders_an_earlier_one_added() -> None:
    policy = SkuPolicy("A", max_backorder_qty=3)
    decided = reserve_orders([order(("A", 2)), order(("A", 2)), order(("A", 1))], {"A": policy}, {"A": Buckets()})
    assert [decisions[0].short for decisions in decided] == [2, 0, 1]
    assert decided[1][0].rejection is RejectionReason.BACKORDER_LIMIT, "2 waiting + 2 would pass the cap of 3"


def test_lines_decided_before_or_earlier_in_the_run_are_not_decided_again() -> None:
    first, tombstoned = order(("A", 1), ("B", 1)), order(("A", 1))
    policies = {"A": SkuPolicy("A"), "B": SkuPolicy("B")}
    levels = {"A": Buckets(available=5), "B": Buckets(available=5)}
    run = [first, tombstoned, first]  # the first order placed twice; the second has a line cancelled before it came
    decided = reserve_orders(run, policies, levels, decided={(tombstoned[0], 1)})
    assert [[d.line_no for d in decisions] for decisions in decided] == [[1, 2], [], []]


def test_shortfalls_are_numbered_per_sku_in_the_order_given() -> None:
    decisions = [
        LineDecision(1, "A", 2, short=2), LineDecision(2, "B", 1, reserved=1),
        LineDecision(1, "B", 3, short=3), LineDecision(1, "A", 1, short=1),
    ]
    assert shortfall_numbers(decisions, {"A": 7, "B": 1}) == [7, 0, 1, 8]


def test_an_order_repeating_a_line_number_is_told_apart() -> None:
    assert repeats_line_no([RequestedLine(1, "A", 1), RequestedLine(1, "B", 1)])
    assert not repeats_line_no([RequestedLine(1, "A", 1), RequestedLine(2, "A", 1)])


SKUS = ("A", "B", "C")  # C has no policy: an unknown SKU


@given(
    available=st.fixed_dictionaries({"A": st.integers(0, 12), "B": st.integers(0, 12)}),
    caps=st.fixed_dictionaries({"A": st.none() | st.integers(0, 15), "B": st.none() | st.integers(0, 15)}),
    orders=st.lists(st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 5)), min_size=1, max_size=4), max_size=12),
)
def test_a_run_decides_as_its_orders_would_one_at_a_time(
    available: dict[str, int], caps: dict[str, int | None], orders: list[list[tuple[str, int]]]
) -> None:
    policies = {sku: SkuPolicy(sku, max_backorder_qty=caps[sku]) for sku in ("A", "B")}
    levels = {sku: Buckets(available=units) for sku, units in available.items()}
    run = [order(*lines) for lines in orders]
    decided = reserve_orders(run, policies, levels)

    current = dict(levels)
    for (_, lines), together in zip(run, decided, strict=True):
        alone = reserve_order(lines, policies, current)
        assert together == alone
        for sku, delta in reservation_deltas(alone).items():
            current[sku] = current[sku] + delta

    reserved: dict[str, int] = defaultdict(int)
    ran_short: set[str] = set()
    for decisions in decided:
        for d in decisions:
            if d.sku in ran_short:
                assert d.reserved == 0, "a line after one that went short finds nothing left"
            reserved[d.sku] += d.reserved
            if d.short:
                ran_short.add(d.sku)
    assert all(reserved[sku] <= available.get(sku, 0) for sku in reserved), "no oversell"
