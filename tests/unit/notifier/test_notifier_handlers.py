"""The notifier's handlers on an in-memory view of the orders (no I/O): which events record which
moments, whatever order the streams deliver them in."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import UUID, uuid4

from services.notifier.domain import Kind, OrderFacts
from services.notifier.handlers import APPLY, Views
from shared.events import (
    BackorderBooked,
    Customer,
    EtaChanged,
    Event,
    OrderedLine,
    OrderPlaced,
    ShipmentLine,
    ShipmentRequested,
    StockReserved,
    StockShort,
)


def placed(order_id: UUID) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id, external_id="SO-1", channel="web", customer=Customer(id="c-1", email="c@example.com"),
        partial_allowed=True, placed_at=datetime.now(UTC),
        lines=(OrderedLine(line_no=1, sku="A", qty=1), OrderedLine(line_no=2, sku="B", qty=2)),
    )


def apply(events: list[Event], order_id: UUID) -> Views:
    views = Views({order_id: OrderFacts(order_id, "", "", "en", "", False, False, ())})
    for event in events:
        APPLY[type(event)](event, views)
        views.settle(order_id)
    return views


def kinds(views: Views) -> list[Kind]:
    return [notice.kind for _, notice, _ in views.notices]


def settled(order_id: UUID) -> list[Event]:
    return [
        placed(order_id),
        StockReserved(order_id=order_id, line_no=1, sku="A", qty=1),
        StockShort(order_id=order_id, line_no=2, sku="B", qty_short=2, qty_reserved=0, ordered_at=datetime.now(UTC),
                   customer_tier="standard", partial_allowed=True, order_short_lines=1),
        BackorderBooked(order_id=order_id, line_no=2, sku="B", qty_waiting=2, promised_date=date(2030, 1, 10)),
    ]


def shipment(order_id: UUID, line_no: int, sku: str, qty: int) -> ShipmentRequested:
    return ShipmentRequested(order_id=order_id, shipment_id=uuid4(), lines=(ShipmentLine(line_no=line_no, sku=sku, qty=qty),))


def test_the_order_is_confirmed_once_when_its_last_line_settles_in_any_arrival_order() -> None:
    order_id = uuid4()
    for events in (settled(order_id), list(reversed(settled(order_id)))):
        assert kinds(apply(events, order_id)) == [Kind.CONFIRMATION]


def test_units_reserved_at_placement_leaving_are_not_news_but_units_that_waited_are() -> None:
    order_id = uuid4()
    shelf = apply([*settled(order_id), shipment(order_id, 1, "A", 1)], order_id)
    assert kinds(shelf) == [Kind.CONFIRMATION]
    waited = apply([*settled(order_id), shipment(order_id, 2, "B", 2)], order_id)
    assert kinds(waited) == [Kind.CONFIRMATION, Kind.READY]


def test_a_date_move_before_the_confirmation_only_updates_the_date_and_a_long_slip_after_it_earns_one_consolation() -> None:
    order_id = uuid4()
    early = EtaChanged(order_id=order_id, line_no=2, sku="B", previous_date=date(2030, 1, 10), new_date=date(2030, 1, 12),
                       reason="queue_moved")
    before = apply([*settled(order_id)[:3], early, settled(order_id)[3]], order_id)
    assert kinds(before) == [Kind.CONFIRMATION]

    slips = [
        EtaChanged(order_id=order_id, line_no=2, sku="B", previous_date=date(2030, 1, 10), new_date=date(2030, 1, 25),
                   reason="purchase_order_changed"),
        EtaChanged(order_id=order_id, line_no=2, sku="B", previous_date=date(2030, 1, 25), new_date=date(2030, 2, 5),
                   reason="purchase_order_changed"),
    ]
    after = apply([*settled(order_id), *slips], order_id)
    assert kinds(after) == [Kind.CONFIRMATION, Kind.DELAY, Kind.DELAY]
    assert [notice.consolation for _, notice, _ in after.notices[1:]] == [True, False]
    assert len(after.consolations) == 1 and after.orders[order_id].line(2).consolation_offered  # type: ignore[union-attr]


def test_an_order_never_placed_here_gets_no_moments() -> None:
    order_id = uuid4()
    views = apply(settled(order_id)[1:], order_id)
    assert views.notices == [] and not views.orders[order_id].placed
