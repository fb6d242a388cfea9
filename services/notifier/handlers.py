"""Notifier event handlers: each fact about an order updates the notifier's view of it, and the
moments worth telling are recorded for the order's coalescing window (the scheduler composes them).

The handlers work on `Views`, the orders of a whole consumer batch loaded and locked in a few
statements, changed in memory and saved in a few more (`apply_batch`); one event alone goes the
same way, as a batch of one."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any
from uuid import UUID

from services.notifier import store
from services.notifier.domain import (
    Consolation,
    Kind,
    LineFacts,
    Notice,
    OrderFacts,
    confirmation_due,
    consolation_due,
    eta_notice,
)
from services.notifier.settings import get_notifier_settings
from shared.bus.handlers import Batch, Handlers
from shared.bus.outbox import UnitOfWork
from shared.events import (
    BackorderAllocated,
    BackorderBooked,
    Envelope,
    EtaChanged,
    Event,
    LineCancelled,
    LinePreordered,
    LineRejected,
    OrderPlaced,
    ShipmentRequested,
    Shipped,
    StockReserved,
    StockShort,
)


@dataclass
class Views:
    """The orders a batch is about, as loaded (locked) and as changed, with what the batch decided."""

    loaded: dict[UUID, OrderFacts]
    orders: dict[UUID, OrderFacts] = field(default_factory=dict)
    emails: dict[UUID, str] = field(default_factory=dict)  # orders placed in this batch
    notices: list[tuple[UUID, Notice, UUID | None]] = field(default_factory=list)
    consolations: list[tuple[UUID, int, Consolation]] = field(default_factory=list)
    cause: Envelope | None = None

    def __post_init__(self) -> None:
        self.orders = dict(self.loaded)

    def update_line(self, order_id: UUID, line_no: int, change: Callable[[LineFacts], LineFacts]) -> tuple[LineFacts, LineFacts]:
        order = self.orders[order_id]
        before = order.line(line_no) or LineFacts(line_no)
        after = change(before)
        self.orders[order_id] = order.with_line(after)
        return before, after

    def tell(self, order_id: UUID, *notices: Notice) -> None:
        """Record moments for the order's window; none for an order never placed here (the streams
        are shared: there is no one to tell, and its window would never close)."""
        if not self.orders[order_id].placed:
            return
        cause = self.cause.event_id if self.cause else None
        self.notices += [(order_id, notice, cause) for notice in notices]

    def settle(self, order_id: UUID) -> None:
        """After every event: the confirmation is decided here, once, the moment the order settles."""
        order = self.orders[order_id]
        if confirmation_due(order):
            self.orders[order_id] = replace(order, confirmed=True)
            self.tell(order_id, Notice(Kind.CONFIRMATION))


def on_order_placed(event: OrderPlaced, views: Views) -> None:
    """The order's contact, language and lines (facts about the lines may have come first)."""
    order = views.orders[event.order_id]
    if order.placed:
        return
    known = {line.line_no: line for line in order.lines}
    lines = tuple(
        replace(known.get(ordered.line_no, LineFacts(ordered.line_no)), sku=ordered.sku, qty=ordered.qty)
        for ordered in event.lines
    )
    views.orders[event.order_id] = replace(
        order, placed=True, external_id=event.external_id, customer_id=event.customer.id, locale=event.customer.locale,
        channel=event.channel, lines=lines,
    )
    views.emails[event.order_id] = event.customer.email


def on_stock_reserved(event: StockReserved, views: Views) -> None:
    views.update_line(event.order_id, event.line_no, lambda line: line.with_reserved(event.qty))


def on_stock_short(event: StockShort, views: Views) -> None:
    views.update_line(event.order_id, event.line_no, lambda line: line.with_short(event.qty_short, event.qty_reserved))


def on_line_preordered(event: LinePreordered, views: Views) -> None:
    """A line waits for its release date; when that date moves after the confirmation, the customer
    is told as of any promise that moved (a delay or good news, worded for a release). No
    consolation: the release date is the product's, not a promise of supply we failed."""
    if event.previous_release_date is None:  # the placement's: the confirmation will say it
        views.update_line(event.order_id, event.line_no, lambda line: line.with_preordered(event.qty, event.release_date))
        return
    date_moved(views, event.order_id, event.line_no, lambda line: line.with_preordered(event.qty, event.release_date),
               event.previous_release_date, event.release_date, consolation=False)


def on_line_rejected(event: LineRejected, views: Views) -> None:
    views.update_line(event.order_id, event.line_no, lambda line: line.with_rejected(event.reason.value))


def on_backorder_booked(event: BackorderBooked, views: Views) -> None:
    views.update_line(event.order_id, event.line_no, lambda line: line.with_booking(event.qty_waiting, event.promised_date))


def on_eta_changed(event: EtaChanged, views: Views) -> None:
    """A promise that moved after the customer was told one: a delay (with a consolation the first
    time it goes past the threshold) or good news. Before the confirmation it only updates the date
    the confirmation will show."""
    date_moved(views, event.order_id, event.line_no, lambda line: line.with_date(event.new_date), event.previous_date,
               event.new_date, consolation=True)


def date_moved(
    views: Views, order_id: UUID, line_no: int, change: Callable[[LineFacts], LineFacts], previous: date | None,
    new: date | None, consolation: bool,
) -> None:
    """A line's date moved (a promise, or a release): the line takes the new date and, once the
    order is confirmed, the customer hears of the move (a delay or good news), with a consolation
    the first time a promise goes past the threshold when `consolation`."""
    policy = get_notifier_settings().notice_policy()
    confirmed = views.orders[order_id].confirmed
    before, _ = views.update_line(order_id, line_no, change)
    notice = eta_notice(before, previous, new, policy) if confirmed else None
    if notice is None:
        return
    if consolation and notice.kind is Kind.DELAY and consolation_due(before, new, policy):
        views.consolations.append((order_id, line_no, new_consolation()))
        views.update_line(order_id, line_no, lambda line: replace(line, consolation_offered=True))
        notice = replace(notice, consolation=True)
    views.tell(order_id, notice)


def new_consolation() -> Consolation:
    settings = get_notifier_settings()
    code = "SORRY-" + secrets.token_hex(4).upper()
    if settings.notify_consolation_kind == "free_shipping":
        return Consolation("free_shipping", code)
    return Consolation("discount", code, settings.notify_consolation_percent)


def on_backorder_allocated(event: BackorderAllocated, views: Views) -> None:
    views.update_line(event.order_id, event.line_no, lambda line: line.with_allocated(event.qty))


def on_shipment_requested(event: ShipmentRequested, views: Views) -> None:
    """Units that waited are about to leave. Units reserved from the shelf at placement are not news
    (the confirmation said "ships now", whichever of the two events the notifier reads first), nor is
    anything before the confirmation, which will say it."""
    order = views.orders[event.order_id]
    if not order.confirmed:
        return
    units = tuple(
        (item.line_no, item.qty) for item in event.lines if (line := order.line(item.line_no)) is not None and line.short > 0
    )
    if units:
        views.tell(event.order_id, Notice(Kind.READY, units=units))


def on_shipped(event: Shipped, views: Views) -> None:
    """Orders' confirmation (a warehouse's report is checked by orders first, which then announces it)."""
    shipped: dict[int, int] = {}
    for item in event.lines:
        shipped[item.line_no] = shipped.get(item.line_no, 0) + item.qty
    for line_no, qty in shipped.items():
        views.update_line(event.order_id, line_no, lambda line, qty=qty: line.with_shipped(qty))  # type: ignore[misc]
    views.tell(event.order_id, Notice(Kind.SHIPPED, units=tuple(sorted(shipped.items()))))


def on_line_cancelled(event: LineCancelled, views: Views) -> None:
    views.update_line(event.order_id, event.line_no, lambda line: line.with_cancelled(event.qty_cancelled))
    if event.qty_cancelled > 0:
        views.tell(event.order_id, Notice(Kind.CANCELLED, units=((event.line_no, event.qty_cancelled),)))


APPLY: dict[type[Event], Callable[[Any, Views], None]] = {
    OrderPlaced: on_order_placed,
    StockReserved: on_stock_reserved,
    StockShort: on_stock_short,
    LinePreordered: on_line_preordered,
    LineRejected: on_line_rejected,
    BackorderBooked: on_backorder_booked,
    EtaChanged: on_eta_changed,
    BackorderAllocated: on_backorder_allocated,
    ShipmentRequested: on_shipment_requested,
    Shipped: on_shipped,
    LineCancelled: on_line_cancelled,
}


async def apply_batch(events: Batch, uow: UnitOfWork) -> None:
    """Load and lock every order the events are about, apply them in order, save what changed."""
    order_ids = sorted({event.order_id for _, event in events if hasattr(event, "order_id")})
    views = Views(await store.lock_orders(uow.session, order_ids))
    for envelope, event in events:
        views.cause = envelope
        APPLY[type(event)](event, views)
        views.settle(event.order_id)  # type: ignore[attr-defined]
    await store.save_views(uow.session, views.loaded, views.orders, views.emails, views.notices, views.consolations,
                           get_notifier_settings().notify_coalesce_window_s)


HANDLERS = Handlers.whole_batch(list(APPLY), apply_batch)
