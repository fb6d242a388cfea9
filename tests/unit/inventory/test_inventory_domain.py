"""Unit tests of inventory's pure rules: reservation, unit movements, availability dates, purchase suggestions."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.inventory.domain.stock import (
    Buckets,
    LineDecision,
    LineHolding,
    NotEnoughStock,
    NotHeld,
    RequestedLine,
    SkuPolicy,
    allocate_to_line,
    cancel_line,
    count_delta,
    decide_line,
    put_away_delta,
    receipt_delta,
    reservation_deltas,
    reserve_order,
    ship_from_line,
)
from services.inventory.domain.supply import (
    Availability,
    AvailabilityStatus,
    BelowReceived,
    InboundSupply,
    PurchaseOrder,
    PurchaseOrderLine,
    SuggestedLine,
    SuggestedPurchaseOrder,
    SupplyPosition,
    availability,
    expected_date,
    purchase_suggestions,
    receipt_content,
    receive_against,
    revise_lines,
    suggested_qty,
)
from shared.events import RejectionReason

MAY_1 = date(2030, 5, 1)
JUNE_1 = date(2030, 6, 1)
JULY_1 = date(2030, 7, 1)


def line(qty: int, sku: str = "A", line_no: int = 1) -> RequestedLine:
    return RequestedLine(line_no, sku, qty)


# --- reservation ---------------------------------------------------------------------------------


def test_line_in_stock_is_reserved_whole() -> None:
    decision = decide_line(line(3), SkuPolicy("A"), available=5, backordered=0)
    assert decision == LineDecision(1, "A", 3, reserved=3, short=0, rejection=None)


def test_unknown_sku_is_rejected() -> None:
    decision = decide_line(line(3, sku="NOPE"), None, available=0, backordered=0)
    assert decision.rejection is RejectionReason.UNKNOWN_SKU
    assert (decision.reserved, decision.short) == (0, 0)


def test_discontinued_line_short_of_stock_is_rejected_whole() -> None:
    decision = decide_line(line(3), SkuPolicy("A", discontinued=True), available=2, backordered=0)
    assert decision.rejection is RejectionReason.DISCONTINUED
    assert (decision.reserved, decision.short) == (0, 0), "a rejected line reserves nothing"


def test_discontinued_line_fully_in_stock_is_still_sold() -> None:
    decision = decide_line(line(2), SkuPolicy("A", discontinued=True), available=2, backordered=0)
    assert (decision.reserved, decision.rejection) == (2, None)


def test_discontinued_wins_over_not_backorderable() -> None:
    policy = SkuPolicy("A", discontinued=True, backorderable=False)
    assert decide_line(line(1), policy, available=0, backordered=0).rejection is RejectionReason.DISCONTINUED


def test_not_backorderable_line_short_of_stock_is_rejected() -> None:
    decision = decide_line(line(4), SkuPolicy("A", backorderable=False), available=1, backordered=0)
    assert decision.rejection is RejectionReason.NOT_BACKORDERABLE
    assert decision.reserved == 0


def test_backorder_limit_counts_units_already_waiting_across_orders() -> None:
    policy = SkuPolicy("A", max_backorder_qty=10)
    assert decide_line(line(5), policy, available=1, backordered=6).short == 4, "6 + 4 = 10 is within the cap"
    rejected = decide_line(line(6), policy, available=1, backordered=6)
    assert rejected.rejection is RejectionReason.BACKORDER_LIMIT
    assert rejected.reserved == 0


def test_backorder_limit_zero_forbids_any_shortfall_but_not_stock() -> None:
    policy = SkuPolicy("A", max_backorder_qty=0)
    assert decide_line(line(1), policy, available=0, backordered=0).rejection is RejectionReason.BACKORDER_LIMIT
    assert decide_line(line(1), policy, available=1, backordered=0).reserved == 1


def test_line_larger_than_stock_is_split_into_reserved_and_short() -> None:
    decision = decide_line(line(5), SkuPolicy("A"), available=2, backordered=0)
    assert (decision.reserved, decision.short, decision.rejection) == (2, 3, None)


def test_lines_on_one_sku_see_what_earlier_lines_left() -> None:
    lines = [line(3, line_no=1), line(3, line_no=2), line(3, line_no=3)]
    decisions = reserve_order(lines, {"A": SkuPolicy("A")}, {"A": Buckets(available=4)})
    assert [(d.reserved, d.short) for d in decisions] == [(3, 0), (1, 2), (0, 3)]
    assert reservation_deltas(decisions) == {"A": Buckets(available=-4, reserved=4, backordered=5)}


def test_backorder_limit_applies_to_the_sum_of_an_orders_lines() -> None:
    policy = SkuPolicy("A", max_backorder_qty=4)
    decisions = reserve_order([line(3, line_no=1), line(3, line_no=2)], {"A": policy}, {"A": Buckets()})
    assert decisions[0].short == 3
    assert decisions[1].rejection is RejectionReason.BACKORDER_LIMIT


def test_order_mixing_stock_backorder_and_rejection() -> None:
    policies = {"A": SkuPolicy("A"), "B": SkuPolicy("B"), "C": SkuPolicy("C", discontinued=True)}
    levels = {"A": Buckets(available=2), "B": Buckets(), "C": Buckets()}
    decisions = reserve_order([line(3, "A", 1), line(1, "B", 2), line(1, "C", 3), line(1, "X", 4)], policies, levels)
    assert [(d.reserved, d.short, d.rejection) for d in decisions] == [
        (2, 1, None), (0, 1, None), (0, 0, RejectionReason.DISCONTINUED), (0, 0, RejectionReason.UNKNOWN_SKU),
    ]
    assert reservation_deltas(decisions) == {
        "A": Buckets(available=-2, reserved=2, backordered=1),
        "B": Buckets(backordered=1),
    }


@given(
    available=st.integers(0, 20),
    backordered=st.integers(0, 20),
    cap=st.none() | st.integers(0, 30),
    qtys=st.lists(st.integers(1, 10), min_size=1, max_size=8),
)
def test_reservation_never_takes_more_than_is_available(
    available: int, backordered: int, cap: int | None, qtys: list[int]
) -> None:
    lines = [line(qty, line_no=n) for n, qty in enumerate(qtys, 1)]
    levels = {"A": Buckets(available=available, backordered=backordered)}
    decisions = reserve_order(lines, {"A": SkuPolicy("A", max_backorder_qty=cap)}, levels)
    assert sum(d.reserved for d in decisions) <= available
    for decision in decisions:
        if decision.rejection:
            assert decision.reserved == decision.short == 0
        else:
            assert decision.reserved + decision.short == decision.qty
    if cap is not None:
        assert backordered + sum(d.short for d in decisions) <= max(cap, backordered)


# --- unit movements ------------------------------------------------------------------------------


def test_cancelling_a_line_releases_held_units_and_leaves_the_book() -> None:
    move = cancel_line(LineHolding("A", reserved=2, cross_docked=1, waiting=4))
    assert move.released == 3
    assert move.stock == Buckets(reserved=-2, cross_docked=-1, pending=3, backordered=-4)
    assert move.line == LineHolding("A", cancelled=True)
    assert cancel_line(move.line).stock.is_zero, "a second cancellation changes nothing"


def test_allocation_cross_docks_or_holds_and_shrinks_the_book() -> None:
    waiting = LineHolding("A", waiting=5)
    dock = allocate_to_line(waiting, 3, cross_dock=True)
    assert dock.stock == Buckets(pending=-3, cross_docked=3, backordered=-3)
    assert (dock.line.cross_docked, dock.line.waiting, dock.released) == (3, 2, 0)
    held = allocate_to_line(waiting, 5, cross_dock=False)
    assert held.stock == Buckets(pending=-5, reserved=5, backordered=-5)
    assert (held.line.reserved, held.line.waiting) == (5, 0)


def test_allocation_to_a_cancelled_line_is_released_again() -> None:
    move = allocate_to_line(LineHolding("A", cancelled=True), 4, cross_dock=True)
    assert move.stock.is_zero, "the units stay pending"
    assert move.released == 4


def test_allocation_beyond_what_a_line_waits_for_releases_the_excess() -> None:
    move = allocate_to_line(LineHolding("A", waiting=2), 5, cross_dock=True)
    assert (move.line.cross_docked, move.released) == (2, 3)
    assert move.stock == Buckets(pending=-2, cross_docked=2, backordered=-2)


def test_shipping_takes_the_named_bucket_first_then_the_other() -> None:
    line_ = LineHolding("A", reserved=2, cross_docked=3)
    move = ship_from_line(line_, 4, "cross_dock")
    assert move.stock == Buckets(cross_docked=-3, reserved=-1, shipped=4)
    assert (move.line.reserved, move.line.cross_docked, move.line.shipped) == (1, 0, 4)
    assert ship_from_line(line_, 2, "pick").stock == Buckets(reserved=-2, shipped=2)


def test_shipping_what_a_line_does_not_hold_is_refused() -> None:
    with pytest.raises(NotHeld):
        ship_from_line(LineHolding("A", reserved=1), 2, "pick")
    with pytest.raises(NotHeld):
        ship_from_line(LineHolding("A", cancelled=True), 1, "pick")


def test_counts_in_go_to_the_allocator_and_counts_out_leave_the_shelf() -> None:
    assert count_delta(Buckets(), 5) == Buckets(counted_in=5, pending=5)
    assert count_delta(Buckets(available=3), -2) == Buckets(available=-2, counted_out=2)
    with pytest.raises(NotEnoughStock):
        count_delta(Buckets(available=1, reserved=9), -2)


def test_a_day_of_movements_conserves_units() -> None:
    stock = Buckets()
    stock += receipt_delta(10)
    stock += put_away_delta(10)
    decisions = reserve_order([line(12)], {"A": SkuPolicy("A")}, {"A": stock})
    stock += reservation_deltas(decisions)["A"]
    holding = LineHolding("A", reserved=10, waiting=2)
    stock += count_delta(stock, 3)
    allocation = allocate_to_line(holding, 2, cross_dock=True)
    stock += allocation.stock + put_away_delta(1)
    shipped = ship_from_line(allocation.line, 12, "pick")
    stock += shipped.stock + count_delta(stock, -1)
    assert stock == Buckets(shipped=12, received=10, counted_in=3, counted_out=1)
    assert stock.conserved


# --- receipts and purchase orders ----------------------------------------------------------------


def test_receipt_content_ignores_line_order() -> None:
    assert receipt_content("W1", None, [("A", 1), ("B", 2)]) == receipt_content("W1", None, [("B", 2), ("A", 1)])
    assert receipt_content("W1", None, [("A", 1)]) != receipt_content("W1", "PO-1", [("A", 1)])


def test_purchase_order_status_and_revisions() -> None:
    order = PurchaseOrder("PO-1", "acme", JUNE_1, (PurchaseOrderLine("A", 10), PurchaseOrderLine("B", 5)))
    assert order.status == "open"
    received = receive_against(order.lines, {"A": 4, "Z": 9})
    assert [(x.sku, x.qty_received, x.qty_open) for x in received] == [("A", 4, 6), ("B", 0, 5)]
    with pytest.raises(BelowReceived):
        revise_lines(received, {"A": 3})
    revised = revise_lines(received, {"A": 4, "B": 0, "C": 2, "D": 0})
    assert [(x.sku, x.qty_ordered, x.qty_open) for x in revised] == [("A", 4, 0), ("B", 0, 0), ("C", 2, 2)]
    assert PurchaseOrder("PO-1", "acme", JUNE_1, revise_lines(received, {"A": 4, "B": 0})).status == "closed"
    assert PurchaseOrder("PO-1", "acme", JUNE_1, order.lines, cancelled=True).status == "cancelled"


# --- availability --------------------------------------------------------------------------------


def test_expected_date_is_the_first_purchase_order_beyond_the_waiting_units() -> None:
    inbound = [InboundSupply("PO-2", JULY_1, 10), InboundSupply("PO-1", JUNE_1, 4)]
    assert expected_date(0, inbound) == JUNE_1
    assert expected_date(3, inbound) == JUNE_1
    assert expected_date(4, inbound) == JULY_1, "the June units are all promised already"
    assert expected_date(14, inbound) is None, "nothing covers a new backorder"


def test_expected_date_skips_empty_purchase_orders_and_breaks_ties_by_id() -> None:
    inbound = [InboundSupply("PO-9", MAY_1, 0), InboundSupply("PO-B", JUNE_1, 2), InboundSupply("PO-A", JUNE_1, 2)]
    assert expected_date(0, inbound) == JUNE_1
    assert expected_date(3, inbound) == JUNE_1
    assert expected_date(0, []) is None


def test_availability_statuses() -> None:
    inbound = [InboundSupply("PO-1", JUNE_1, 5)]
    assert availability(SkuPolicy("A"), 3, 0, inbound) == Availability(AvailabilityStatus.IN_STOCK, 3)
    assert availability(SkuPolicy("A", discontinued=True), 3, 0, []) == Availability(AvailabilityStatus.IN_STOCK, 3)
    assert availability(SkuPolicy("A"), 0, 2, inbound) == Availability(AvailabilityStatus.BACKORDER, 0, JUNE_1)
    assert availability(SkuPolicy("A"), 0, 5, inbound) == Availability(AvailabilityStatus.BACKORDER, 0, None)
    assert availability(SkuPolicy("A", discontinued=True), 0, 0, inbound).status is AvailabilityStatus.OUT_OF_STOCK
    assert availability(SkuPolicy("A", backorderable=False), 0, 0, inbound).status is AvailabilityStatus.OUT_OF_STOCK
    capped = SkuPolicy("A", max_backorder_qty=2)
    assert availability(capped, 0, 2, inbound).status is AvailabilityStatus.OUT_OF_STOCK, "an order would be rejected"


# --- purchase suggestions ------------------------------------------------------------------------


def position(sku: str = "A", *, backordered: int = 0, on_order: int = 0, available: int = 0, **policy: object) -> SupplyPosition:
    values: dict[str, object] = {"supplier": "acme", **policy}
    return SupplyPosition(SkuPolicy(sku, **values), available, backordered, on_order)  # type: ignore[arg-type]


def test_suggestion_covers_backorders_beyond_open_purchase_orders() -> None:
    assert suggested_qty(position(backordered=10, on_order=4)) == 6
    assert suggested_qty(position(backordered=10, on_order=10)) == 0
    assert suggested_qty(position(backordered=10, on_order=12)) == 0


def test_suggestion_adds_safety_stock_not_on_the_shelf() -> None:
    assert suggested_qty(position(backordered=3, safety_stock=5)) == 8
    assert suggested_qty(position(available=2, safety_stock=5)) == 3, "restock to safety even with nothing waiting"
    assert suggested_qty(position(available=5, safety_stock=5)) == 0
    assert suggested_qty(position(backordered=3, safety_stock=5, discontinued=True)) == 3, "no safety stock for a dead SKU"


def test_suggestion_rounds_up_to_minimum_then_case_pack() -> None:
    assert suggested_qty(position(backordered=7, case_pack=6)) == 12
    assert suggested_qty(position(backordered=12, case_pack=6)) == 12
    assert suggested_qty(position(backordered=2, min_order_qty=10)) == 10
    assert suggested_qty(position(backordered=2, min_order_qty=10, case_pack=4)) == 12
    assert suggested_qty(position(backordered=11, min_order_qty=10, case_pack=4)) == 12


def test_suggestions_are_one_purchase_order_per_supplier() -> None:
    suggestions = purchase_suggestions([
        position("B", backordered=2),
        position("A", backordered=5, on_order=1, case_pack=4),
        position("C", backordered=3, supplier="zenith"),
        position("D", backordered=9, supplier=None),
        position("E", backordered=1, on_order=1),
    ])
    assert suggestions == [
        SuggestedPurchaseOrder("acme", (SuggestedLine("A", 4, 5, 1), SuggestedLine("B", 2, 2, 0))),
        SuggestedPurchaseOrder("zenith", (SuggestedLine("C", 3, 3, 0),)),
    ]


@given(
    backordered=st.integers(0, 500), on_order=st.integers(0, 500), available=st.integers(0, 50),
    safety=st.integers(0, 50), case_pack=st.integers(1, 24), moq=st.integers(0, 100),
)
def test_suggested_quantity_covers_the_need_in_whole_cases(
    backordered: int, on_order: int, available: int, safety: int, case_pack: int, moq: int
) -> None:
    qty = suggested_qty(position(
        backordered=backordered, on_order=on_order, available=available,
        safety_stock=safety, case_pack=case_pack, min_order_qty=moq,
    ))
    need = backordered + safety - on_order - available
    if need <= 0:
        assert qty == 0
    else:
        assert qty % case_pack == 0
        assert qty >= max(need, moq)
        assert qty - case_pack < max(need, moq), "never a whole case more than needed"
