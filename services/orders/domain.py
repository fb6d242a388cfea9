"""Order line rules: the quantities behind each line, the state they imply, how each event changes
them, when a line may be cancelled, and what is ready to ship.

Every function is pure: it takes line values and returns new ones, so a handler can load, apply and
save, and a redelivered or out-of-order event is judged here, not in SQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from uuid import UUID

from shared.events import ShipmentLine


class LineState(StrEnum):
    PENDING = "pending"  # inventory has not answered for every unit yet
    PREORDERED = "preordered"  # waits for its SKU's release date, not for goods (expected_date: that date)
    RESERVED = "reserved"  # every unit reserved from stock
    BACKORDERED = "backordered"  # some units wait in the backorder book
    REJECTED = "rejected"  # the line cannot be filled (reason kept)
    ALLOCATED = "allocated"  # nothing waits any more; some units came from the book
    SHIPPED = "shipped"  # every unit shipped
    CANCELLED = "cancelled"  # whatever had not shipped was cancelled


@dataclass(frozen=True)
class Line:
    """One order line and the units behind it.

    Counters only grow (apart from a cancel), so applying an event twice or late cannot make them
    lie: `qty_short` is what inventory reported short, and what still waits is derived from it
    minus what the book allocated, whichever of the two arrived first.
    """

    line_no: int
    sku: str
    qty: int
    reserved: int = 0
    qty_short: int = 0
    allocated_pick: int = 0
    allocated_cross_dock: int = 0
    requested_pick: int = 0
    requested_cross_dock: int = 0
    shipped: int = 0
    cancelled: int = 0
    cancel_reason: str | None = None
    rejected_reason: str | None = None
    expected_date: date | None = None
    preordered: int = 0  # units told to wait for the release date; inventory decides them on that day

    @property
    def allocated(self) -> int:
        return self.allocated_pick + self.allocated_cross_dock

    @property
    def requested(self) -> int:
        return self.requested_pick + self.requested_cross_dock

    @property
    def supplied(self) -> int:
        """Units the line holds: reserved from stock or allocated from the book."""
        return self.reserved + self.allocated

    @property
    def closed(self) -> bool:
        """Rejected or cancelled: no event may change its quantities any more."""
        return self.rejected_reason is not None or self.cancelled > 0

    @property
    def backordered(self) -> int:
        """Units still waiting in the book."""
        if self.closed or self.supplied >= self.qty:
            return 0
        return max(self.qty_short - self.allocated, 0)

    @property
    def state(self) -> LineState:
        if self.rejected_reason is not None:
            return LineState.REJECTED
        if self.cancelled > 0:
            return LineState.CANCELLED
        if self.shipped >= self.qty:
            return LineState.SHIPPED
        if self.supplied >= self.qty:
            return LineState.ALLOCATED if self.allocated > 0 else LineState.RESERVED
        if self.reserved + self.qty_short < self.qty:
            return LineState.PREORDERED if self.preordered else LineState.PENDING
        return LineState.BACKORDERED


@dataclass(frozen=True)
class Order:
    id: UUID
    partial_allowed: bool
    lines: tuple[Line, ...]

    def line(self, line_no: int) -> Line | None:
        return next((line for line in self.lines if line.line_no == line_no), None)

    def with_line(self, new: Line) -> Order:
        return replace(self, lines=tuple(new if line.line_no == new.line_no else line for line in self.lines))

    @property
    def complete(self) -> bool:
        """Every line still alive holds all its units: nothing pending, nothing waiting."""
        return all(line.closed or line.supplied >= line.qty for line in self.lines)


@dataclass(frozen=True)
class Promise:
    """A date a line was promised (None: no date any more), why, and when it was told."""

    order_id: UUID
    line_no: int
    event_id: UUID
    promised_date: date | None
    previous_date: date | None
    reason: str
    at: datetime


class CannotCancel(Exception):
    """The line has nothing left that a cancel could take back."""


# --- events applied to one line -----------------------------------------------------------------


def apply_reserved(line: Line, qty: int) -> Line:
    """StockReserved: set, not add, so a duplicate of the fact under a new event id adds nothing."""
    if line.closed:
        return line
    return replace(line, reserved=max(line.reserved, min(qty, line.qty)))


def apply_short(line: Line, qty_short: int, qty_reserved: int) -> Line:
    """StockShort carries the reserved part too, so it may arrive before or after StockReserved."""
    if line.closed:
        return line
    return replace(
        line,
        qty_short=max(line.qty_short, min(qty_short, line.qty)),
        reserved=max(line.reserved, min(qty_reserved, line.qty)),
    )


def apply_preordered(line: Line, qty: int, release_date: date) -> Line:
    """LinePreordered, at placement or when the release date moves: the line waits for that date.
    Once inventory has decided the line (its release came), a late re-dating changes nothing."""
    if line.closed or line.reserved + line.qty_short >= line.qty:
        return line
    return replace(line, preordered=max(line.preordered, min(qty, line.qty)), expected_date=release_date)


def apply_rejected(line: Line, reason: str) -> Line:
    if line.closed:
        return line
    return replace(line, rejected_reason=reason)


def accepts_allocation(line: Line) -> bool:
    """A cancelled or rejected line records no allocation: inventory releases those units."""
    return not line.closed


def apply_allocated(line: Line, qty: int, cross_dock: bool) -> Line:
    """BackorderAllocated, once per (line, source): the caller keeps the applied allocations."""
    if not accepts_allocation(line):
        return line
    if cross_dock:
        return replace(line, allocated_cross_dock=line.allocated_cross_dock + qty)
    return replace(line, allocated_pick=line.allocated_pick + qty)


def apply_eta(line: Line, new_date: date | None) -> Line:
    if line.closed:
        return line
    return replace(line, expected_date=new_date)


def apply_shipped(line: Line, qty: int) -> Line:
    """Units of a confirmed shipment left the building; a cancelled line ships nothing more."""
    if line.closed:
        return line
    return replace(line, shipped=min(line.shipped + qty, line.qty))


def cancel_line(line: Line, reason: str = "customer_request") -> Line:
    """Cancel every unit that has not shipped (held, requested or waiting alike)."""
    if line.rejected_reason is not None:
        raise CannotCancel(f"line {line.line_no} was rejected ({line.rejected_reason})")
    if line.cancelled > 0:
        raise CannotCancel(f"line {line.line_no} is already cancelled")
    if line.shipped >= line.qty:
        raise CannotCancel(f"line {line.line_no} has shipped in full")
    return replace(line, cancelled=line.qty - line.shipped, cancel_reason=reason)


def cancellable(line: Line) -> bool:
    try:
        cancel_line(line)
    except CannotCancel:
        return False
    return True


# --- shipping -----------------------------------------------------------------------------------


def units_ready(line: Line) -> tuple[int, int]:
    """(pick, cross_dock) units the line holds that no shipment has asked for yet."""
    if line.closed:
        return 0, 0
    pick = max(line.reserved + line.allocated_pick - line.requested_pick, 0)
    cross_dock = max(line.allocated_cross_dock - line.requested_cross_dock, 0)
    room = max(line.qty - line.requested, 0)  # never ask for more than was ordered
    pick = min(pick, room)
    return pick, min(cross_dock, room - pick)


def ready_to_ship(order: Order) -> list[ShipmentLine]:
    """What the warehouse should send now. Reserved and held units are picked from the shelf;
    cross-docked units go straight from the receiving dock. An order that may not ship partially
    ships nothing until it is complete, and then everything it holds."""
    if not order.partial_allowed and not order.complete:
        return []
    ready: list[ShipmentLine] = []
    for line in order.lines:
        pick, cross_dock = units_ready(line)
        if pick:
            ready.append(ShipmentLine(line_no=line.line_no, sku=line.sku, qty=pick, source="pick"))
        if cross_dock:
            ready.append(ShipmentLine(line_no=line.line_no, sku=line.sku, qty=cross_dock, source="cross_dock"))
    return ready


def request_shipment(order: Order, shipment: Iterable[ShipmentLine]) -> Order:
    """Count the units of a new shipment request against their lines."""
    for item in shipment:
        line = order.line(item.line_no)
        if line is None:
            raise ValueError(f"shipment names line {item.line_no}, which order {order.id} does not have")
        if item.source == "cross_dock":
            line = replace(line, requested_cross_dock=line.requested_cross_dock + item.qty)
        else:
            line = replace(line, requested_pick=line.requested_pick + item.qty)
        order = order.with_line(line)
    return order


def withdraw_lines(shipment: Iterable[ShipmentLine], line_nos: set[int]) -> tuple[ShipmentLine, ...]:
    """A requested shipment keeps only lines that were not cancelled since it was requested."""
    return tuple(item for item in shipment if item.line_no not in line_nos)


def same_shipment(reported: Iterable[ShipmentLine], requested: Iterable[ShipmentLine]) -> bool:
    """A shipment is confirmed only as it was requested: the same units of the same lines from the
    same places, whatever the order of its lines."""
    return Counter(reported) == Counter(requested)


def ship(order: Order, shipment: Iterable[ShipmentLine]) -> Order:
    """A confirmed shipment: each of its lines ships the units it carries."""
    for item in shipment:
        line = order.line(item.line_no)
        if line is not None:
            order = order.with_line(apply_shipped(line, item.qty))
    return order
