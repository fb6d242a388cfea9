"""Promised-date rules: when each waiting line can expect its units from the open purchase orders
and what to tell the customer when that date moves, built on the queue since a line's date depends
on the units ahead of it."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from services.allocator.domain.queue import LineKey, PriorityPolicy, WaitingLine, queue_order


@dataclass(frozen=True)
class InboundSupply:
    """One open purchase-order line for the SKU, expected on expected_at."""

    purchase_order_id: str
    qty: int
    expected_at: date
    supplier_state: str = "open"  # where the goods are by the supplier's word (shown, never used to date)


@dataclass(frozen=True)
class EtaChange:
    """A line whose promised date moved, so the customer may need to hear about it."""

    key: LineKey
    previous: date | None
    new: date | None


@dataclass(frozen=True)
class DateMove:
    """A stored promised date to change, and why (BOOKED: the line is entering the book and is
    announced as BackorderBooked, not EtaChanged)."""

    sku: str
    key: LineKey
    previous: date | None
    new: date | None
    reason: EtaReason


@dataclass(frozen=True)
class Cover:
    """What the open purchase orders promise one waiting line: the date (None when they do not
    reach every unit of it) and the purchase orders whose units reach it, in arrival order."""

    promised: date | None
    purchase_orders: tuple[str, ...]


def project_promised_dates(queue: Sequence[WaitingLine], inbound: Iterable[InboundSupply]) -> dict[LineKey, date | None]:
    """The date each waiting line can be promised, if the open purchase orders arrive as expected."""
    return {key: cover.promised for key, cover in cover_queue(queue, inbound).items()}


def cover_queue(queue: Sequence[WaitingLine], inbound: Iterable[InboundSupply]) -> dict[LineKey, Cover]:
    """Which arrivals reach each waiting line, and so its date.

    The queue must already be in priority order: a line is promised the arrival that
    covers every unit ahead of it plus its own, so a line split across two purchase
    orders gets the later date.
    """
    supplies = sorted(
        (supply for supply in inbound if supply.qty > 0),
        key=lambda supply: (supply.expected_at, supply.purchase_order_id),
    )
    covers: dict[LineKey, Cover] = {}
    position_end = 0
    covered = 0
    next_supply = 0
    first_reaching = 0  # the first supply that still has units for this line or those behind it
    supplied_before_first = 0
    for line in queue:
        position_start = position_end
        position_end += line.qty_waiting
        while covered < position_end and next_supply < len(supplies):
            covered += supplies[next_supply].qty
            next_supply += 1
        while first_reaching < next_supply and supplied_before_first + supplies[first_reaching].qty <= position_start:
            supplied_before_first += supplies[first_reaching].qty
            first_reaching += 1
        promised = supplies[next_supply - 1].expected_at if covered >= position_end else None
        reaching = dict.fromkeys(supply.purchase_order_id for supply in supplies[first_reaching:next_supply])
        covers[line.key] = Cover(promised, tuple(reaching))
    return covers


def eta_changes(previous: Mapping[LineKey, date | None], current: Mapping[LineKey, date | None]) -> list[EtaChange]:
    """The lines whose promised date moved; lines that left the book need no notice."""
    return [EtaChange(key, previous.get(key), current[key]) for key in sorted(current) if previous.get(key) != current[key]]


# --- small rules the service applies around the algorithm ------------------------------


class EtaReason(StrEnum):
    """Why a promised date moved: the notifier words its message (and apology) after it."""

    BOOKED = "booked"  # announced as BackorderBooked, not as EtaChanged
    QUEUE_MOVED = "queue_moved"
    PRIORITY_CHANGED = "priority_changed"
    PURCHASE_ORDER_CHANGED = "purchase_order_changed"
    PURCHASE_ORDER_CANCELLED = "purchase_order_cancelled"


def eta_reasons(
    changes: Iterable[EtaChange], reason: EtaReason, booked: Iterable[LineKey] = ()
) -> list[tuple[EtaChange, EtaReason]]:
    """A line entering the book is "booked"; every other line moved for the reason of the change."""
    entering = set(booked)
    return [(change, EtaReason.BOOKED if change.key in entering else reason) for change in changes]


def date_moves(
    book: Mapping[str, Mapping[WaitingLine, date | None]],
    inbound: Mapping[str, Iterable[InboundSupply]],
    policies: Mapping[str, PriorityPolicy],
    reason: EtaReason,
    entering: Collection[LineKey] = (),
) -> list[DateMove]:
    """Project the promised date of every waiting line of each SKU (`book`: each line with the date
    it was last promised) from the SKU's inbound supply; returns the lines whose date moved, by SKU."""
    moves = []
    for sku in sorted(book):
        previous = {line.key: promised for line, promised in book[sku].items()}
        current = project_promised_dates(queue_order(book[sku], policies[sku]), inbound.get(sku, ()))
        for change, why in eta_reasons(eta_changes(previous, current), reason, entering):
            moves.append(DateMove(sku, change.key, change.previous, change.new, why))
    return moves
