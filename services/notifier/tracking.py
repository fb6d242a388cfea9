"""The customer's tracking page: each line of the order with what ships, what waits and until when,
its place in the backorder book, the purchase orders on their way to it (the supplier's word on
them), and a timeline from ordered to shipped. Built (pure) from the notifier's view of the order
and the allocator's answer about the book; rendered in the customer's language."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.notifier.domain import LineFacts, OrderFacts, language_of, line_view
from services.notifier.render import babel_locale, environment

# The steps of a line's way to the customer; the supply steps only for units that had to wait.
STEPS = ("ordered", "backordered", "on_purchase_order", "shipped_by_supplier", "received", "allocated", "shipped")
SUPPLY_STEPS = frozenset({"backordered", "on_purchase_order", "shipped_by_supplier", "received", "allocated"})


@dataclass(frozen=True)
class PurchaseOrderOnItsWay:
    supplier_state: str  # open, confirmed, shipped
    expected_at: date


@dataclass(frozen=True)
class Place:
    position: int
    lines_waiting: int
    units_waiting: int


@dataclass(frozen=True)
class TrackedLine:
    sku: str
    qty: int
    qty_now: int
    qty_waiting: int
    qty_shipped: int
    qty_cancelled: int
    promised_date: date | None
    preorder: bool
    place: Place | None
    purchase_orders: tuple[PurchaseOrderOnItsWay, ...]
    steps: tuple[tuple[str, bool], ...]  # (step, reached), in order


@dataclass(frozen=True)
class TrackingPage:
    external_id: str
    channel: str
    today: date
    lines: tuple[TrackedLine, ...]


def timeline(line: LineFacts, purchase_orders: tuple[PurchaseOrderOnItsWay, ...]) -> tuple[tuple[str, bool], ...]:
    """Which steps the line has reached. A line that never waited goes from ordered to shipped."""
    waited = line.short > 0
    reached = {
        "ordered": True,
        "backordered": waited,
        "on_purchase_order": bool(purchase_orders) or line.allocated > 0,
        "shipped_by_supplier": any(po.supplier_state == "shipped" for po in purchase_orders) or line.allocated > 0,
        "received": line.allocated > 0,
        "allocated": waited and line.allocated >= line.short,
        "shipped": line.shipped > 0,
    }
    return tuple((step, reached[step]) for step in STEPS if waited or step not in SUPPLY_STEPS)


def tracking_page(order: OrderFacts, book: Mapping[int, Mapping[str, Any]], today: date) -> TrackingPage:
    """The page for an order; `book`: the allocator's place of each waiting line, by line number."""
    lines = []
    for facts in order.lines:
        view = line_view(facts, today)
        place = book.get(facts.line_no)
        coming = tuple(
            PurchaseOrderOnItsWay(po["supplier_state"], date.fromisoformat(str(po["expected_at"])))
            for po in (place or {}).get("covering_purchase_orders", ())
        )
        lines.append(TrackedLine(
            sku=facts.sku, qty=facts.qty, qty_now=view.qty_now, qty_waiting=view.qty_waiting, qty_shipped=facts.shipped,
            qty_cancelled=facts.cancelled, promised_date=view.promised_date, preorder=view.preorder,
            place=Place(place["position"], place["lines_waiting"], place["units_waiting"]) if place else None,
            purchase_orders=coming, steps=timeline(facts, coming),
        ))
    return TrackingPage(order.external_id, order.channel, today, tuple(lines))


def render_tracking(page: TrackingPage, locale: str) -> str:
    """The page's HTML in the customer's language (dates and numbers in their locale)."""
    language = language_of(locale)
    template = environment().get_template("pages/track.html")
    return template.render(page=page, today=page.today, language=language, locale=babel_locale(locale, language))


def render_refusal(reason: str, expired: bool, locale: str | None) -> str:
    """The page for a link that cannot be used, in the reader's language when the browser says it."""
    language = language_of(locale)
    template = environment().get_template("pages/track_refused.html")
    return template.render(reason=reason, expired=expired, language=language)
