"""Backorder allocation rules: who gets arriving goods, what ships at once, and when the rest is promised."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from uuid import UUID

LineKey = tuple[UUID, int]
"""(order_id, line_no): one order line, the unit the backorder book is kept in."""

VIP_TIER = "vip"


class PriorityPolicy(StrEnum):
    """Which waiting line is served first when goods arrive."""

    FIFO = "fifo"
    TIER = "tier"
    DUE_DATE = "due_date"
    COMPLETE_LINES_FIRST = "complete_lines_first"


@dataclass(frozen=True)
class WaitingLine:
    """An order line in the backorder book, still waiting for qty_waiting units of its SKU."""

    order_id: UUID
    line_no: int
    sku: str
    qty_waiting: int
    ordered_at: datetime
    tier: str
    first_promised_date: date | None

    def __post_init__(self) -> None:
        # A fulfilled line leaves the book; a naive time could not be compared with the others.
        if self.qty_waiting <= 0:
            raise ValueError(f"line {self.key} waits for {self.qty_waiting} units; expected > 0")
        if self.ordered_at.tzinfo is None:
            raise ValueError(f"line {self.key} has a naive ordered_at; expected tz-aware UTC")

    @property
    def key(self) -> LineKey:
        return (self.order_id, self.line_no)


@dataclass(frozen=True)
class Allocation:
    """Units of an arrival given to one waiting line."""

    order_id: UUID
    line_no: int
    qty: int

    @property
    def key(self) -> LineKey:
        return (self.order_id, self.line_no)


@dataclass(frozen=True)
class AllocationResult:
    """Who got what, in the order the events are emitted, and what goes to the shelf."""

    allocations: tuple[Allocation, ...]
    put_away: int


@dataclass(frozen=True)
class InboundSupply:
    """One open purchase-order line for the SKU, expected on expected_at."""

    purchase_order_id: str
    qty: int
    expected_at: date


@dataclass(frozen=True)
class OrderProgress:
    """What the cross-dock decision needs to know about a whole order, not just this SKU."""

    partial_allowed: bool
    units_waiting: int
    lines_unregistered: int


@dataclass(frozen=True)
class EtaChange:
    """A line whose promised date moved, so the customer may need to hear about it."""

    key: LineKey
    previous: date | None
    new: date | None


def _fifo_key(line: WaitingLine) -> tuple[datetime, UUID, int]:
    # order_id and line_no break ties so the queue never depends on how rows were read.
    return (line.ordered_at, line.order_id, line.line_no)


def _tier_key(line: WaitingLine) -> tuple[int, tuple[datetime, UUID, int]]:
    return (0 if line.tier == VIP_TIER else 1, _fifo_key(line))


def _due_date_key(line: WaitingLine) -> tuple[bool, date, tuple[datetime, UUID, int]]:
    # Lines never promised a date go last: nobody has been told to expect them.
    promised = line.first_promised_date
    return (promised is None, promised or date.min, _fifo_key(line))


_QUEUE_KEYS: dict[PriorityPolicy, Callable[[WaitingLine], tuple[object, ...]]] = {
    PriorityPolicy.FIFO: _fifo_key,
    PriorityPolicy.TIER: _tier_key,
    PriorityPolicy.DUE_DATE: _due_date_key,
    # The completion preference depends on the supply, so allocate() applies it, not the queue.
    PriorityPolicy.COMPLETE_LINES_FIRST: _fifo_key,
}


def queue_order(book: Iterable[WaitingLine], policy: PriorityPolicy) -> list[WaitingLine]:
    """The backorder book in the order lines are served under the policy."""
    lines = list(book)
    keys = [line.key for line in lines]
    if len(set(keys)) != len(keys):
        raise ValueError("the backorder book holds the same line twice")
    return sorted(lines, key=_QUEUE_KEYS[policy])


def _serve_greedily(queue: Sequence[WaitingLine], supply: int) -> dict[LineKey, int]:
    given: dict[LineKey, int] = {}
    remaining = supply
    for line in queue:
        if remaining == 0:
            break
        qty = min(line.qty_waiting, remaining)
        given[line.key] = qty
        remaining -= qty
    return given


def _serve_complete_lines_first(queue: Sequence[WaitingLine], supply: int) -> dict[LineKey, int]:
    # Completing a line lets it ship; a partial fill of a big line may leave everyone waiting.
    given: dict[LineKey, int] = {}
    remaining = supply
    for line in queue:
        if line.qty_waiting <= remaining:
            given[line.key] = line.qty_waiting
            remaining -= line.qty_waiting
    for line in queue:
        if remaining == 0:
            break
        if line.key not in given:
            given[line.key] = min(line.qty_waiting, remaining)
            remaining -= given[line.key]
    return given


def allocate(book: Iterable[WaitingLine], supply: int, policy: PriorityPolicy) -> AllocationResult:
    """Serve the backorder book before the shelf: waiting customers come before new ones."""
    if supply < 0:
        raise ValueError(f"supply must not be negative, got {supply}")
    queue = queue_order(book, policy)
    if policy is PriorityPolicy.COMPLETE_LINES_FIRST:
        given = _serve_complete_lines_first(queue, supply)
    else:
        given = _serve_greedily(queue, supply)
    allocations = tuple(Allocation(line.order_id, line.line_no, given[line.key]) for line in queue if line.key in given)
    return AllocationResult(allocations, put_away=supply - sum(given.values()))


def cross_dock(allocations: Sequence[Allocation], orders: Mapping[UUID, OrderProgress]) -> dict[LineKey, bool]:
    """Whether each allocation goes straight to shipping (True) or is held until the order is whole."""
    allocated_to_order: dict[UUID, int] = defaultdict(int)
    for allocation in allocations:
        allocated_to_order[allocation.order_id] += allocation.qty
    decisions: dict[LineKey, bool] = {}
    for allocation in allocations:
        progress = orders[allocation.order_id]
        still_waiting = progress.units_waiting - allocated_to_order[allocation.order_id]
        if still_waiting < 0:
            # Stale progress: shipping on it could send an incomplete order as if complete.
            raise ValueError(f"order {allocation.order_id} got more units than it waits for ({progress.units_waiting})")
        completes = progress.lines_unregistered == 0 and still_waiting == 0
        decisions[allocation.key] = progress.partial_allowed or completes
    return decisions


def project_promised_dates(queue: Sequence[WaitingLine], inbound: Iterable[InboundSupply]) -> dict[LineKey, date | None]:
    """The date each waiting line can be promised, if the open purchase orders arrive as expected.

    The queue must already be in priority order: a line is promised the arrival that
    covers every unit ahead of it plus its own, so a line split across two purchase
    orders gets the later date.
    """
    supplies = sorted(
        (supply for supply in inbound if supply.qty > 0),
        key=lambda supply: (supply.expected_at, supply.purchase_order_id),
    )
    promised: dict[LineKey, date | None] = {}
    position_end = 0
    covered = 0
    next_supply = 0
    for line in queue:
        position_end += line.qty_waiting
        while covered < position_end and next_supply < len(supplies):
            covered += supplies[next_supply].qty
            next_supply += 1
        promised[line.key] = supplies[next_supply - 1].expected_at if covered >= position_end else None
    return promised


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


def policy_in_force(sku_override: str | None, global_policy: str | None) -> PriorityPolicy:
    """A SKU's own policy beats the global one; with neither, the book is FIFO."""
    return PriorityPolicy(sku_override or global_policy or PriorityPolicy.FIFO)


def supply_per_sku(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Units per SKU, in SKU order: several lines of one SKU are one arrival, and handling SKUs in
    one fixed order is what keeps two allocators from deadlocking on each other's book rows."""
    totals: dict[str, int] = defaultdict(int)
    for sku, qty in lines:
        if qty < 0:
            raise ValueError(f"{sku}: quantity {qty} is negative")
        totals[sku] += qty
    return dict(sorted(totals.items()))


def order_progress(partial_allowed: bool, units_waiting: int, order_short_lines: int, lines_booked: int) -> OrderProgress:
    """What the book knows of an order: short lines not booked yet still wait, even if unseen."""
    return OrderProgress(partial_allowed, units_waiting, lines_unregistered=max(order_short_lines - lines_booked, 0))


def eta_reasons(
    changes: Iterable[EtaChange], reason: EtaReason, booked: Iterable[LineKey] = ()
) -> list[tuple[EtaChange, EtaReason]]:
    """A line entering the book is "booked"; every other line moved for the reason of the change."""
    entering = set(booked)
    return [(change, EtaReason.BOOKED if change.key in entering else reason) for change in changes]
