"""Unit tests of the order line rules: derived state, each event, cancels and what is ready to ship."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import reduce
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.orders.domain import (
    CannotCancel,
    Line,
    LineState,
    Order,
    apply_allocated,
    apply_eta,
    apply_preordered,
    apply_rejected,
    apply_reserved,
    apply_shipped,
    apply_short,
    cancel_line,
    cancellable,
    ready_to_ship,
    request_shipment,
    ship,
    units_ready,
    withdraw_lines,
)
from shared.events import ShipmentLine


def line(qty: int = 5, line_no: int = 1, **values: Any) -> Line:
    return Line(line_no=line_no, sku=f"SKU-{line_no}", qty=qty, **values)


def order(*lines: Line, partial: bool = False) -> Order:
    return Order(id=uuid4(), partial_allowed=partial, lines=lines)


def shipped_units(shipment: list[ShipmentLine]) -> dict[tuple[int, str], int]:
    return {(item.line_no, item.source): item.qty for item in shipment}


# --- derived state ------------------------------------------------------------------------------


def test_a_new_line_is_pending() -> None:
    assert line().state is LineState.PENDING
    assert line().backordered == 0


def test_five_with_two_in_stock_is_two_reserved_three_backordered() -> None:
    short = apply_short(line(5), qty_short=3, qty_reserved=2)
    assert (short.reserved, short.backordered, short.state) == (2, 3, LineState.BACKORDERED)


def test_reserved_alone_stays_pending_until_inventory_answers_for_every_unit() -> None:
    assert apply_reserved(line(5), 2).state is LineState.PENDING
    assert apply_reserved(line(5), 5).state is LineState.RESERVED


@pytest.mark.parametrize(
    ("values", "state"),
    [
        ({"reserved": 5}, LineState.RESERVED),
        ({"qty_short": 5}, LineState.BACKORDERED),
        ({"qty_short": 5, "allocated_pick": 2}, LineState.BACKORDERED),
        ({"qty_short": 5, "allocated_pick": 2, "allocated_cross_dock": 3}, LineState.ALLOCATED),
        ({"reserved": 2, "qty_short": 3, "allocated_cross_dock": 3}, LineState.ALLOCATED),
        ({"reserved": 5, "requested_pick": 5, "shipped": 5}, LineState.SHIPPED),
        ({"reserved": 5, "shipped": 2}, LineState.RESERVED),
        ({"rejected_reason": "discontinued"}, LineState.REJECTED),
        ({"reserved": 2, "shipped": 2, "cancelled": 3}, LineState.CANCELLED),
    ],
)
def test_state_follows_from_the_quantities(values: dict[str, Any], state: LineState) -> None:
    assert line(5, **values).state is state


def test_closed_lines_wait_for_nothing() -> None:
    assert line(5, qty_short=5, cancelled=5).backordered == 0
    assert line(5, qty_short=5, rejected_reason="discontinued").backordered == 0


# --- events -------------------------------------------------------------------------------------


def test_reservation_and_shortage_agree_in_either_order_and_twice() -> None:
    reserved_first = apply_short(apply_reserved(line(5), 2), 3, 2)
    short_first = apply_reserved(apply_short(line(5), 3, 2), 2)
    duplicated = apply_reserved(apply_short(apply_short(reserved_first, 3, 2), 3, 2), 2)
    assert reserved_first == short_first == duplicated
    assert (duplicated.reserved, duplicated.backordered) == (2, 3)


def test_reservation_never_exceeds_the_line() -> None:
    assert apply_reserved(line(3), 10).reserved == 3


def test_rejection_keeps_the_reason() -> None:
    rejected = apply_rejected(line(2), "unknown_sku")
    assert (rejected.state, rejected.rejected_reason) == (LineState.REJECTED, "unknown_sku")


def test_allocation_fills_the_waiting_units_by_source() -> None:
    waiting = apply_short(line(5), 5, 0)
    held = apply_allocated(waiting, 2, cross_dock=False)
    assert (held.allocated_pick, held.backordered, held.state) == (2, 3, LineState.BACKORDERED)
    done = apply_allocated(held, 3, cross_dock=True)
    assert (done.allocated_cross_dock, done.allocated, done.backordered, done.state) == (3, 5, 0, LineState.ALLOCATED)


def test_allocation_arriving_before_the_shortage_is_not_lost() -> None:
    early = apply_allocated(line(4), 4, cross_dock=True)
    assert early.state is LineState.ALLOCATED
    late = apply_short(early, 4, 0)
    assert (late.backordered, late.state) == (0, LineState.ALLOCATED)


def test_events_for_a_cancelled_line_change_nothing() -> None:
    cancelled = cancel_line(apply_short(line(5), 3, 2))
    assert apply_reserved(cancelled, 5) == cancelled
    assert apply_short(cancelled, 5, 0) == cancelled
    assert apply_rejected(cancelled, "discontinued") == cancelled
    assert apply_allocated(cancelled, 3, cross_dock=True) == cancelled
    assert apply_eta(cancelled, date(2030, 1, 1)) == cancelled
    assert cancelled.state is LineState.CANCELLED


def test_eta_sets_and_clears_the_expected_date() -> None:
    dated = apply_eta(apply_short(line(5), 5, 0), date(2030, 5, 1))
    assert dated.expected_date == date(2030, 5, 1)
    assert apply_eta(dated, None).expected_date is None


def test_shipping_never_exceeds_the_line() -> None:
    assert apply_shipped(line(3, reserved=3), 5).shipped == 3


# --- cancel rules -------------------------------------------------------------------------------


def test_cancel_takes_back_everything_not_shipped() -> None:
    partly_shipped = line(5, reserved=5, requested_pick=5, shipped=2)
    cancelled = cancel_line(partly_shipped, "changed mind")
    assert (cancelled.cancelled, cancelled.cancel_reason, cancelled.state) == (3, "changed mind", LineState.CANCELLED)


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"reserved": 5, "shipped": 5}, "shipped in full"),
        ({"cancelled": 5}, "already cancelled"),
        ({"rejected_reason": "discontinued"}, "rejected"),
    ],
)
def test_nothing_left_to_cancel_is_refused(values: dict[str, Any], why: str) -> None:
    with pytest.raises(CannotCancel, match=why):
        cancel_line(line(5, **values))
    assert not cancellable(line(5, **values))


# --- ready to ship ------------------------------------------------------------------------------


def test_partial_order_ships_whatever_is_ready() -> None:
    mixed = order(line(5, 1, reserved=2, qty_short=3), line(2, 2, qty_short=2), partial=True)
    assert shipped_units(ready_to_ship(mixed)) == {(1, "pick"): 2}


def test_complete_only_order_waits_for_every_line() -> None:
    waiting = order(line(5, 1, reserved=2, qty_short=3), line(2, 2, reserved=2))
    assert ready_to_ship(waiting) == []
    held = waiting.with_line(apply_allocated(waiting.lines[0], 1, cross_dock=False))
    assert ready_to_ship(held) == []
    complete = held.with_line(apply_allocated(held.lines[0], 2, cross_dock=True))
    assert shipped_units(ready_to_ship(complete)) == {(1, "pick"): 3, (1, "cross_dock"): 2, (2, "pick"): 2}


def test_a_pending_line_blocks_a_complete_only_order() -> None:
    assert ready_to_ship(order(line(2, 1, reserved=2), line(1, 2))) == []


def test_rejected_and_cancelled_lines_do_not_block_the_rest() -> None:
    rest = order(line(2, 1, reserved=2), line(1, 2, rejected_reason="discontinued"), line(3, 3, qty_short=3, cancelled=3))
    assert shipped_units(ready_to_ship(rest)) == {(1, "pick"): 2}


def test_requested_units_are_not_requested_again() -> None:
    first = order(line(5, 1, reserved=2, qty_short=3), partial=True)
    requested = request_shipment(first, ready_to_ship(first))
    assert requested.lines[0].requested_pick == 2
    assert ready_to_ship(requested) == []
    allocated = requested.with_line(apply_allocated(requested.lines[0], 3, cross_dock=True))
    assert shipped_units(ready_to_ship(allocated)) == {(1, "cross_dock"): 3}


def test_never_more_is_requested_than_was_ordered() -> None:
    assert units_ready(line(3, reserved=3, allocated_cross_dock=2)) == (3, 0)


def test_a_complete_only_order_with_every_line_closed_ships_nothing() -> None:
    assert ready_to_ship(order(line(2, 1, rejected_reason="discontinued"))) == []


def test_withdrawn_lines_leave_a_requested_shipment() -> None:
    items = (ShipmentLine(line_no=1, sku="A", qty=2), ShipmentLine(line_no=2, sku="B", qty=1, source="cross_dock"))
    assert withdraw_lines(items, {2}) == items[:1]
    assert withdraw_lines(items, {1, 2}) == ()


def test_confirming_a_shipment_ships_its_lines() -> None:
    placed = order(line(2, 1, reserved=2), line(3, 2, reserved=1, allocated_cross_dock=2))
    shipment = ready_to_ship(placed)
    done = ship(request_shipment(placed, shipment), shipment)
    assert [item.state for item in done.lines] == [LineState.SHIPPED, LineState.SHIPPED]


# --- properties ---------------------------------------------------------------------------------

Change = Callable[[Line], Line]
changes = st.lists(
    st.one_of(
        st.integers(1, 8).map(lambda qty: (lambda ln: apply_reserved(ln, qty))),
        st.tuples(st.integers(1, 8), st.integers(0, 8)).map(lambda q: (lambda ln: apply_short(ln, q[0], q[1]))),
        st.tuples(st.integers(1, 8), st.booleans()).map(lambda a: (lambda ln: apply_allocated(ln, a[0], a[1]))),
        st.just(lambda ln: cancel_line(ln) if cancellable(ln) else ln),
    ),
    max_size=8,
)


@given(changes, st.booleans())
def test_requests_never_exceed_the_line_whatever_happens(steps: list[Change], partial: bool) -> None:
    current = order(line(8), partial=partial)
    for step in steps:
        current = current.with_line(step(current.lines[0]))
        current = request_shipment(current, ready_to_ship(current))
        only = current.lines[0]
        assert only.requested <= only.qty
        assert only.backordered <= only.qty
        assert only.requested <= only.supplied or only.closed


@given(st.permutations([0, 1, 2]))
def test_reservation_shortage_and_eta_commute(permutation: list[int]) -> None:
    steps: list[Change] = [
        lambda ln: apply_reserved(ln, 2),
        lambda ln: apply_short(ln, 3, 2),
        lambda ln: apply_eta(ln, date(2031, 1, 1)),
    ]
    final = reduce(lambda ln, index: steps[index](ln), permutation, line(5))
    assert (final.reserved, final.backordered, final.state) == (2, 3, LineState.BACKORDERED)
    assert final.expected_date == date(2031, 1, 1)


# --- preorders ---------------------------------------------------------------------------------


def test_a_preordered_line_waits_for_its_release_date_then_is_decided_like_any_other() -> None:
    release = date(2027, 3, 12)
    preordered = apply_preordered(line(qty=3), 3, release)
    assert (preordered.state, preordered.expected_date, preordered.backordered) == (LineState.PREORDERED, release, 0)
    moved = apply_preordered(preordered, 3, date(2027, 4, 1))
    assert moved.expected_date == date(2027, 4, 1)
    released = apply_short(apply_reserved(moved, 2), 1, 2)  # on the release day: 2 held for it, 1 into the book
    assert released.state is LineState.BACKORDERED and released.backordered == 1
    assert apply_preordered(released, 3, date(2027, 5, 1)).expected_date == date(2027, 4, 1)  # late re-dating: ignored
    assert cancel_line(preordered).state is LineState.CANCELLED
