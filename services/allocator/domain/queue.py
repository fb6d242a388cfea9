"""Queue rules: the order the backorder book is served in, who gets which units of an arrival and
whether they cross-dock, kept pure so that allocation is tested without I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Literal, TypeVar
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
class Arrival:
    """Units arriving for the book: a receipt, or a release (from the shelf: a pick; or units of
    `receipt_id` still at the dock). Units at the dock may cross-dock. `units` per SKU, in SKU order."""

    source: Literal["receipt", "release"]
    source_id: str
    receipt_id: str | None
    units: Mapping[str, int]
    purchase_order_id: str | None = None

    @property
    def at_dock(self) -> bool:
        return self.receipt_id is not None


@dataclass(frozen=True)
class SkuAllocation:
    """An allocation of the domain, with the SKU it was made in (a receipt may carry several)."""

    sku: str
    allocation: Allocation


@dataclass(frozen=True)
class Served:
    """What one arrival did: its allocations (by SKU, each SKU's in queue order) and the units
    of each SKU that go to the shelf."""

    allocations: tuple[SkuAllocation, ...]
    put_away: Mapping[str, int]

    @property
    def orders(self) -> set[UUID]:
        return {item.allocation.order_id for item in self.allocations}


@dataclass(frozen=True)
class OrderProgress:
    """What the cross-dock decision needs to know about a whole order, not just this SKU."""

    partial_allowed: bool
    units_waiting: int
    lines_unregistered: int


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
    return _allocate_from(queue_order(book, policy), supply, policy)


def _allocate_from(queue: Sequence[WaitingLine], supply: int, policy: PriorityPolicy) -> AllocationResult:
    """allocate() on a book already in the policy's queue order."""
    if supply < 0:
        raise ValueError(f"supply must not be negative, got {supply}")
    if policy is PriorityPolicy.COMPLETE_LINES_FIRST:
        given = _serve_complete_lines_first(queue, supply)
    else:
        given = _serve_greedily(queue, supply)
    allocations = tuple(Allocation(line.order_id, line.line_no, qty) for line in queue if (qty := given.get(line.key)))
    return AllocationResult(allocations, put_away=supply - sum(given.values()))


def allocate_in_turn(book: Iterable[WaitingLine], supplies: Sequence[int], policy: PriorityPolicy) -> list[AllocationResult]:
    """Several arrivals of one SKU served one after the other, each from what the ones before it
    left: the same results as allocating each from the book read again after the one before."""
    remaining = {line.key: line for line in queue_order(book, policy)}
    results = []
    for supply in supplies:
        result = _allocate_from(queue_head(remaining.values(), supply, policy), supply, policy)
        for allocation in result.allocations:
            line = remaining[allocation.key]
            if allocation.qty == line.qty_waiting:
                del remaining[allocation.key]
            else:
                remaining[allocation.key] = replace(line, qty_waiting=line.qty_waiting - allocation.qty)
        results.append(result)
    return results


def queue_head(queue: Iterable[WaitingLine], supply: int, policy: PriorityPolicy) -> list[WaitingLine]:
    """The lines of a queue (in the policy's order) that the supply can reach: those with fewer
    units ahead of them than the supply. Allocating from them is allocating from the whole queue
    under a greedy policy; complete_lines_first may fill any line that fits, so it gets the whole
    queue. The queue-heads statement of the store makes the same cut in SQL."""
    if policy is PriorityPolicy.COMPLETE_LINES_FIRST:
        return list(queue)
    head, units = [], 0
    for line in queue:
        if units >= supply:
            break
        head.append(line)
        units += line.qty_waiting
    return head


def serve_in_turn(
    arrivals: Sequence[Arrival], heads: Mapping[str, Iterable[WaitingLine]], policies: Mapping[str, PriorityPolicy]
) -> list[Served]:
    """Serve the arrivals in their order, SKU by SKU, from `heads`: per SKU the head of its queue
    that the arrivals' total supply reaches (under a greedy policy) or its whole book."""
    skus = sorted({sku for arrival in arrivals for sku in arrival.units})
    results = {
        sku: iter(allocate_in_turn(heads.get(sku, ()), [a.units[sku] for a in arrivals if sku in a.units], policies[sku]))
        for sku in skus
    }
    served = []
    for arrival in arrivals:
        allocations: list[SkuAllocation] = []
        put_away: dict[str, int] = {}
        for sku in arrival.units:
            result = next(results[sku])
            allocations += [SkuAllocation(sku, allocation) for allocation in result.allocations]
            put_away[sku] = result.put_away
        served.append(Served(tuple(allocations), put_away))
    return served


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


def cross_dock_in_turn(
    arrivals: Sequence[Arrival], served: Sequence[Served], orders: Mapping[UUID, OrderProgress]
) -> list[list[bool]]:
    """Whether each allocation of each arrival cross-docks, decided arrival by arrival (across its
    SKUs) on the orders as the arrivals before it left them: what those allocated no longer waits.
    Units not at the dock are picked from the shelf, never cross-docked."""
    allocated_before: dict[UUID, int] = defaultdict(int)
    decisions = []
    for arrival, result in zip(arrivals, served, strict=True):
        allocations = [item.allocation for item in result.allocations]
        if arrival.at_dock and allocations:
            now = {order_id: _less_waiting(orders[order_id], allocated_before[order_id]) for order_id in result.orders}
            decided = cross_dock(allocations, now)
            decisions.append([decided[allocation.key] for allocation in allocations])
        else:
            decisions.append([False] * len(allocations))
        for allocation in allocations:
            allocated_before[allocation.order_id] += allocation.qty
    return decisions


def _less_waiting(order: OrderProgress, allocated: int) -> OrderProgress:
    return replace(order, units_waiting=order.units_waiting - allocated) if allocated else order


# --- small rules the service applies around the algorithm ------------------------------


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


class SupplyConflict(ValueError):
    """A receipt or release id already served comes back with other units."""


Item = TypeVar("Item")


def first_arrivals(
    arrivals: Sequence[tuple[Item, Arrival]], applied: Mapping[tuple[str, str], Mapping[str, int]]
) -> list[tuple[Item, Arrival]]:
    """The arrivals not served before. Supply is idempotent on its business key (source, source_id):
    the same units under that key again (before, or earlier among these) are the same fact under
    another event id and have no second effect; other units under it are refused (SupplyConflict)."""
    seen = {key: dict(units) for key, units in applied.items()}
    fresh = []
    for item, arrival in arrivals:
        key = (arrival.source, arrival.source_id)
        units = dict(arrival.units)
        if key not in seen:
            seen[key] = units
            fresh.append((item, arrival))
        elif seen[key] != units:
            raise SupplyConflict(f"{arrival.source} {arrival.source_id} was already applied as {seen[key]}, now {units}")
    return fresh


def queue_may_move_between(events: Iterable[Iterable[str]], policies: Mapping[str, PriorityPolicy]) -> set[str]:
    """SKUs whose queue order the re-dating after one event of a run may change for the next (each
    event given by the SKUs it touches): under due_date, a line promised a date for the first time
    moves up. A run whose events share such a SKU (when it has dates to move) is applied one event
    at a time; every other run together, re-dated once."""
    events_per_sku: dict[str, int] = defaultdict(int)
    for skus in events:
        for sku in set(skus):
            events_per_sku[sku] += 1
    return {sku for sku, count in events_per_sku.items() if count > 1 and policies[sku] is PriorityPolicy.DUE_DATE}
