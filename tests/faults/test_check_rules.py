"""The per-line agreement rules on hand-made rows: agreeing views pass, each disagreement is named."""

from __future__ import annotations

from uuid import uuid4

from faults.check import LineViews

ORDER = uuid4()
KEY = (ORDER, 1)


def order_line(**changes: object) -> dict:
    line = {"sku": "S", "qty": 3, "reserved": 1, "qty_short": 2, "allocated_pick": 0, "allocated_cross_dock": 1,
            "shipped": 0, "cancelled": 0, "rejected_reason": None, "state": "backordered"}
    return line | changes


def views(orders: dict, inventory: dict, book: dict | None, allocated: int = 1) -> LineViews:
    found = LineViews()
    found.orders = {KEY: orders}
    found.applied = {KEY: orders["allocated_pick"] + orders["allocated_cross_dock"]}
    found.inventory = {KEY: {"sku": "S", "reserved": 1, "cross_docked": 1, "shipped": 0, "waiting": 1, "cancelled": False,
                             "rejection": None} | inventory}
    waiting = {"sku": "S", "status": "waiting", "qty_waiting": 1, "qty_allocated": allocated}
    found.book = {KEY: waiting | book} if book is not None else {}
    found.allocations = {KEY: {"qty": allocated, "n": 1, "sources": 1}} if allocated else {}
    return found


def test_three_views_that_agree_pass() -> None:
    assert views(order_line(), {}, {}).agreement() == []


def test_a_cancel_undone_in_orders_is_named() -> None:
    problems = views(order_line(), {"cancelled": True, "reserved": 0, "cross_docked": 0, "waiting": 0},
                     {"status": "cancelled", "qty_waiting": 0}).agreement()
    assert len(problems) == 1 and "cancelled in inventory but backordered in orders" in problems[0]


def test_a_cancelled_line_still_waiting_in_the_book_is_named() -> None:
    cancelled = order_line(cancelled=3, state="cancelled")
    problems = views(cancelled, {"cancelled": True, "reserved": 0, "cross_docked": 0, "waiting": 0}, {}).agreement()
    assert len(problems) == 1 and "still waiting 1 in the allocator's book" in problems[0]


def test_waiting_units_that_differ_and_a_pending_line_are_named() -> None:
    problems = views(order_line(qty_short=0, state="pending"), {"waiting": 2}, None).agreement()
    assert len(problems) == 1
    assert "still pending" in problems[0] and "inventory 2 waiting" in problems[0]
