"""Unit tests of the supplier side of a purchase order: open -> confirmed -> shipped -> received,
forward only, skipping allowed, each state dated, the history in time order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.inventory.domain.supply import (
    CLOCK_SKEW,
    PurchaseOrder,
    SupplierState,
    SupplierStep,
    SupplierStepRefused,
    SupplierTimeRefused,
    new_purchase_order,
    receive_against,
    report_supplier_step,
    revise_lines,
    settle_received,
)

OPENED = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CONFIRMED, SHIPPED, RECEIVED = SupplierState.CONFIRMED, SupplierState.SHIPPED, SupplierState.RECEIVED


def placed(*lines: tuple[str, int]) -> PurchaseOrder:
    return new_purchase_order("PO-1", "acme", date(2026, 12, 12), lines or (("A", 10),), OPENED)


def receive(order: PurchaseOrder, at: datetime, **units: int) -> PurchaseOrder:
    return settle_received(replace(order, lines=receive_against(order.lines, units)), at)


def day(n: int) -> datetime:
    return OPENED + timedelta(days=n)


def test_a_placed_order_is_open_since_it_was_placed() -> None:
    order = placed()
    assert (order.supplier_state, order.supplier_step, order.shipment) == (
        SupplierState.OPEN, SupplierStep(SupplierState.OPEN, OPENED), None,
    )


def test_confirmed_then_shipped_with_carrier_then_received_by_receipts() -> None:
    order = report_supplier_step(placed(("A", 10), ("B", 2)), SupplierStep(CONFIRMED, day(1)), NOW)
    order = report_supplier_step(order, SupplierStep(SHIPPED, day(5), "DHL", "JD0146"), NOW)
    order = receive(order, day(9), A=10)
    assert order.supplier_state is SHIPPED, "B has not arrived"
    order = receive(order, day(10), B=2)
    assert [(step.state, step.at) for step in order.supplier_history] == [
        (SupplierState.OPEN, OPENED), (CONFIRMED, day(1)), (SHIPPED, day(5)), (RECEIVED, day(10)),
    ]
    assert order.shipment == SupplierStep(SHIPPED, day(5), "DHL", "JD0146")
    assert order.status == "closed"


def test_states_may_be_skipped() -> None:
    shipped = report_supplier_step(placed(), SupplierStep(SHIPPED, day(3)), NOW)
    assert [step.state for step in shipped.supplier_history] == [SupplierState.OPEN, SHIPPED]
    received = receive(placed(), day(4), A=10)
    assert [step.state for step in received.supplier_history] == [SupplierState.OPEN, RECEIVED]


def test_a_supplier_state_never_goes_back_nor_repeats_and_received_is_not_reported() -> None:
    shipped = report_supplier_step(placed(), SupplierStep(SHIPPED, day(3)), NOW)
    with pytest.raises(SupplierStepRefused, match=r"already shipped since .*never goes back to confirmed"):
        report_supplier_step(shipped, SupplierStep(CONFIRMED, day(4)), NOW)
    with pytest.raises(SupplierStepRefused, match="reported once"):
        report_supplier_step(shipped, SupplierStep(SHIPPED, day(4), "UPS"), NOW)
    with pytest.raises(SupplierStepRefused, match="by receipts"):
        report_supplier_step(placed(), SupplierStep(RECEIVED, day(1)), NOW)


def test_cancelled_or_closed_orders_take_no_supplier_change() -> None:
    with pytest.raises(SupplierStepRefused, match="is cancelled"):
        report_supplier_step(replace(placed(), cancelled=True), SupplierStep(CONFIRMED, day(1)), NOW)
    cut = replace(placed(), lines=revise_lines(placed().lines, {"A": 0}))
    with pytest.raises(SupplierStepRefused, match="is closed"):
        report_supplier_step(cut, SupplierStep(SHIPPED, day(1)), NOW)
    assert settle_received(cut, day(1)).supplier_state is SupplierState.OPEN, "nothing arrived: not received"
    cancelled = replace(placed(), cancelled=True)
    assert receive(cancelled, day(2), A=10).supplier_history == cancelled.supplier_history


def test_a_state_is_not_dated_before_the_last_one_nor_in_the_future() -> None:
    confirmed = report_supplier_step(placed(), SupplierStep(CONFIRMED, day(5)), NOW)
    with pytest.raises(SupplierTimeRefused, match="before the purchase order became confirmed"):
        report_supplier_step(confirmed, SupplierStep(SHIPPED, day(4)), NOW)
    with pytest.raises(SupplierTimeRefused, match="in the future"):
        report_supplier_step(confirmed, SupplierStep(SHIPPED, NOW + CLOCK_SKEW + timedelta(seconds=1)), NOW)
    skewed = report_supplier_step(confirmed, SupplierStep(SHIPPED, NOW + CLOCK_SKEW), NOW)
    assert skewed.supplier_state is SHIPPED, "a clock a little ahead is taken as given"


def test_a_receipt_dated_before_the_last_state_is_received_at_that_state() -> None:
    shipped = report_supplier_step(placed(), SupplierStep(SHIPPED, day(6)), NOW)
    received = receive(shipped, day(2), A=10)
    assert received.supplier_step == SupplierStep(RECEIVED, day(6))


# A day of supplier news: reports of any state at any hour, and receipts of some units, in any order.
news = st.lists(
    st.one_of(
        st.tuples(st.just("report"), st.sampled_from(list(SupplierState)), st.integers(-48, 24 * 40)),
        st.tuples(st.just("receipt"), st.integers(1, 6), st.integers(-48, 24 * 40)),
    ),
    max_size=12,
)


@given(news)
def test_the_state_never_goes_back_and_the_history_is_in_time_order(events: list[tuple[str, object, int]]) -> None:
    order = placed(("A", 10))
    for kind, what, hours in events:
        at = OPENED + timedelta(hours=hours)
        before = order
        if kind == "receipt":
            assert isinstance(what, int)
            order = receive(order, at, A=what)
        else:
            assert isinstance(what, SupplierState)
            try:
                order = report_supplier_step(order, SupplierStep(what, at), NOW)
            except (SupplierStepRefused, SupplierTimeRefused):
                assert order == before
        assert order.supplier_state.rank >= before.supplier_state.rank
        assert order.supplier_history[: len(before.supplier_history)] == before.supplier_history, "history is only added to"
        ranks = [step.state.rank for step in order.supplier_history]
        assert ranks == sorted(set(ranks)), "each state once, in the state machine's order"
        times = [step.at for step in order.supplier_history]
        assert times == sorted(times), "in time order"
        assert (order.supplier_state is RECEIVED) == (order.lines[0].qty_received >= 10)
