"""An order read while the allocator (the book's owner) cannot answer: the order is shown, current,
without its lines' places, and says why; never an error. And nothing is asked when nothing waits."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from services.orders.book import with_places_in_book
from services.orders.domain import LineState
from services.orders.schemas import LineRead, OrderRead, Shipping
from shared.book import BookUnavailable, places_in_book
from shared.events import Customer
from shared.settings import Settings


def order(backordered: int) -> OrderRead:
    line = LineRead(line_no=1, sku="MUG", qty=2, state=LineState.BACKORDERED if backordered else LineState.RESERVED,
                    reserved=2 - backordered, backordered=backordered, allocated=0, requested=0, shipped=0, cancelled=0,
                    expected_date=None, rejection_reason=None, cancel_reason=None)
    return OrderRead(id=uuid4(), external_id="SO-1", channel="web", customer=Customer(id="c", email="c@example.com"),
                     shipping=Shipping(), placed_at=datetime.now(UTC), lines=[line])


@pytest.fixture
def allocator_away(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ALLOCATOR_URL", "http://127.0.0.1:1")  # nothing listens there
    return Settings()


async def test_a_waiting_order_is_shown_without_its_places_and_says_why(allocator_away: Settings) -> None:
    shown = await with_places_in_book(order(backordered=1), allocator_away)
    assert shown.book_unavailable is not None and "backorder book could not be read" in shown.book_unavailable
    assert shown.lines[0].queue is None and shown.lines[0].covering_purchase_orders == []
    with pytest.raises(BookUnavailable):
        await places_in_book(allocator_away, shown.id)


async def test_an_order_with_nothing_waiting_asks_nothing(allocator_away: Settings) -> None:
    assert (await with_places_in_book(order(backordered=0), allocator_away)).book_unavailable is None
