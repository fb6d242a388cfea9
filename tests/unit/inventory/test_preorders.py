"""Preorders apart from backorders, as pure rules: before its release date a SKU's lines are
preordered whole (never reserved, never short), up to a cap; on the release day they are decided
in the order they were placed, from the stock held for them, then the book."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from services.inventory.domain.stock import (
    Buckets,
    LineHolding,
    Preorder,
    RequestedLine,
    SkuPolicy,
    cancel_line,
    decide_line,
    release_deltas,
    release_preorders,
    reserve_orders,
)
from services.inventory.domain.supply import AvailabilityStatus, availability
from shared.events import RejectionReason

TODAY = date(2026, 11, 30)
RELEASE = TODAY + timedelta(days=10)
GAME = SkuPolicy("GAME", release_date=RELEASE, preorder_cap=10)
T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def line(qty: int, line_no: int = 1) -> RequestedLine:
    return RequestedLine(line_no, "GAME", qty)


def preorder(n: int, qty: int) -> Preorder:
    return Preorder((UUID(int=n), 1), "GAME", qty, T0 + timedelta(minutes=n), "standard", True, 1, RELEASE)


def test_before_the_release_a_line_is_preordered_whole_even_with_stock_on_hand() -> None:
    decision = decide_line(line(3), GAME, available=50, backordered=0, preordered=0, today=TODAY)
    assert (decision.preordered, decision.reserved, decision.short, decision.rejection) == (3, 0, 0, None)
    assert decision.release_date == RELEASE


def test_from_the_release_day_the_sku_sells_like_any_other() -> None:
    on_the_day = decide_line(line(3), GAME, available=2, backordered=0, preordered=0, today=RELEASE)
    assert (on_the_day.preordered, on_the_day.reserved, on_the_day.short) == (0, 2, 1)
    no_date = decide_line(line(3), SkuPolicy("GAME"), available=0, backordered=0, today=TODAY)
    assert (no_date.preordered, no_date.short) == (0, 3)


def test_the_preorder_cap_counts_units_preordered_across_orders() -> None:
    assert decide_line(line(4), GAME, 0, 0, preordered=6, today=TODAY).preordered == 4
    refused = decide_line(line(5), GAME, 0, 0, preordered=6, today=TODAY)
    assert refused.rejection is RejectionReason.PREORDER_LIMIT and refused.preordered == 0


def test_a_discontinued_preorder_is_rejected() -> None:
    policy = SkuPolicy("GAME", release_date=RELEASE, discontinued=True)
    assert decide_line(line(1), policy, 0, 0, today=TODAY).rejection is RejectionReason.DISCONTINUED


def test_orders_in_a_run_see_the_preorders_before_them_for_the_cap() -> None:
    orders = [(UUID(int=n), [line(4)]) for n in range(3)]
    decided = reserve_orders(orders, {"GAME": GAME}, {"GAME": Buckets(available=100)}, today=TODAY)
    assert [d.preordered for [d] in decided] == [4, 4, 0]
    assert decided[2][0].rejection is RejectionReason.PREORDER_LIMIT


def test_a_product_page_shows_a_preorder_with_its_release_date() -> None:
    answer = availability(GAME, available=7, backordered=0, inbound=(), preordered=2, today=TODAY)
    assert (answer.status, answer.expected_at) == (AvailabilityStatus.PREORDER, RELEASE)
    assert availability(GAME, 7, 0, (), preordered=10, today=TODAY).status is AvailabilityStatus.OUT_OF_STOCK
    assert availability(GAME, 7, 0, (), preordered=10, today=RELEASE).status is AvailabilityStatus.IN_STOCK


def test_cancelling_a_preordered_line_takes_it_out_of_the_tally() -> None:
    moved = cancel_line(LineHolding("GAME", preordered=3))
    assert moved.stock == Buckets(preordered=-3) and moved.released == 0 and moved.line.preordered == 0


@given(
    qtys=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=12),
    held=st.integers(min_value=0, max_value=40),
)
def test_release_serves_the_earliest_preorders_first_and_never_more_than_is_held(qtys: list[int], held: int) -> None:
    queue = [preorder(n, qty) for n, qty in enumerate(qtys)]
    released = SkuPolicy("GAME", release_date=TODAY)
    decisions = release_preorders(queue, {"GAME": released}, {"GAME": Buckets(available=held, preordered=sum(qtys))})

    assert sum(d.reserved for d in decisions) == min(held, sum(qtys))
    assert all(d.reserved + d.short == d.qty for d in decisions)  # every unit decided: held or in the book
    first_short = next((n for n, d in enumerate(decisions) if d.short), len(decisions))
    assert all(d.short == 0 for d in decisions[:first_short]) and all(d.reserved == 0 for d in decisions[first_short + 1 :])
    change = release_deltas(decisions)["GAME"]
    assert change.preordered == -sum(qtys) and change.available == -min(held, sum(qtys))
