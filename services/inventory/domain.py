"""Inventory rules: what an order line gets from stock, how units move between buckets, when a SKU is
expected and what to buy. Pure: no database, no framework, no broker."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date
from enum import StrEnum
from typing import Literal

from shared.events import RejectionReason

BUCKETS = (
    "available", "reserved", "pending", "cross_docked", "shipped",
    "received", "counted_in", "counted_out", "backordered",
)


@dataclass(frozen=True)
class Buckets:
    """Units of one SKU per bucket; the same shape serves as a stock level and as a change to one.

    `pending` holds units handed to the allocator that it has not decided yet (received at the
    dock, released by a cancellation or a count); `backordered` counts units waiting in the book
    and is a tally, not a place where units are, so it is outside the conservation equation.
    """

    available: int = 0
    reserved: int = 0
    pending: int = 0
    cross_docked: int = 0
    shipped: int = 0
    received: int = 0
    counted_in: int = 0
    counted_out: int = 0
    backordered: int = 0

    def __add__(self, other: Buckets) -> Buckets:
        return Buckets(**{name: getattr(self, name) + getattr(other, name) for name in BUCKETS})

    @property
    def is_zero(self) -> bool:
        return all(getattr(self, f.name) == 0 for f in fields(self))

    @property
    def conserved(self) -> bool:
        """Units are never created or lost: what came in is somewhere."""
        came_in = self.received + self.counted_in
        somewhere = self.available + self.reserved + self.pending + self.cross_docked + self.shipped + self.counted_out
        return came_in == somewhere


@dataclass(frozen=True)
class SkuPolicy:
    sku: str
    backorderable: bool = True
    discontinued: bool = False
    max_backorder_qty: int | None = None
    """Cap on units waiting for this SKU across all orders (not per line): a line whose shortfall
    would take the SKU's backorder book beyond it is rejected with `backorder_limit`."""
    supplier: str | None = None
    safety_stock: int = 0
    case_pack: int = 1
    min_order_qty: int = 0


# --- reservation of a placed order ------------------------------------------------------------


@dataclass(frozen=True)
class RequestedLine:
    line_no: int
    sku: str
    qty: int


@dataclass(frozen=True)
class LineDecision:
    """The fate of one ordered line: reserved from stock, short (backordered), or rejected."""

    line_no: int
    sku: str
    qty: int
    reserved: int = 0
    short: int = 0
    rejection: RejectionReason | None = None


def decide_line(line: RequestedLine, policy: SkuPolicy | None, available: int, backordered: int) -> LineDecision:
    """Reserve what is on hand; the rest is backordered if the SKU's policy allows it."""
    if policy is None:
        return LineDecision(line.line_no, line.sku, line.qty, rejection=RejectionReason.UNKNOWN_SKU)
    if available >= line.qty:
        return LineDecision(line.line_no, line.sku, line.qty, reserved=line.qty)
    shortfall = line.qty - max(available, 0)
    rejection: RejectionReason | None = None
    if policy.discontinued:
        rejection = RejectionReason.DISCONTINUED
    elif not policy.backorderable:
        rejection = RejectionReason.NOT_BACKORDERABLE
    elif policy.max_backorder_qty is not None and backordered + shortfall > policy.max_backorder_qty:
        rejection = RejectionReason.BACKORDER_LIMIT
    if rejection is not None:
        # A rejected line takes nothing: reserving part of a line that cannot be completed
        # would hold stock for a line nobody will ship.
        return LineDecision(line.line_no, line.sku, line.qty, rejection=rejection)
    return LineDecision(line.line_no, line.sku, line.qty, reserved=line.qty - shortfall, short=shortfall)


def reserve_order(
    lines: Sequence[RequestedLine], policies: Mapping[str, SkuPolicy], levels: Mapping[str, Buckets]
) -> list[LineDecision]:
    """Decide every line in order; later lines on a SKU see what earlier lines left."""
    available = {sku: level.available for sku, level in levels.items()}
    backordered = {sku: level.backordered for sku, level in levels.items()}
    decisions = []
    for line in lines:
        decision = decide_line(line, policies.get(line.sku), available.get(line.sku, 0), backordered.get(line.sku, 0))
        available[line.sku] = available.get(line.sku, 0) - decision.reserved
        backordered[line.sku] = backordered.get(line.sku, 0) + decision.short
        decisions.append(decision)
    return decisions


def reservation_deltas(decisions: Iterable[LineDecision]) -> dict[str, Buckets]:
    """The change to each SKU's stock row that a set of decisions makes."""
    deltas: dict[str, Buckets] = defaultdict(Buckets)
    for decision in decisions:
        if decision.reserved or decision.short:
            deltas[decision.sku] += Buckets(
                available=-decision.reserved, reserved=decision.reserved, backordered=decision.short
            )
    return dict(deltas)


# --- what one order line holds, and how events move it -----------------------------------------


@dataclass(frozen=True)
class LineHolding:
    sku: str
    reserved: int = 0
    cross_docked: int = 0
    shipped: int = 0
    waiting: int = 0
    cancelled: bool = False
    short_seq: int = 0  # which of its SKU's shortfalls it waits on (see ledger.number_shortfalls)


@dataclass(frozen=True)
class Movement:
    """A line's new holding, the change to its SKU's stock row, and the units handed back to the
    allocator (to be announced with StockReleased)."""

    line: LineHolding
    stock: Buckets
    released: int = 0


class NotHeld(ValueError):
    """A shipment asks for units the line does not hold (yet)."""


def cancel_line(line: LineHolding) -> Movement:
    """Reserved and cross-docked units go back to the allocator (the book first); waiting units
    leave the book. A second cancellation changes nothing."""
    if line.cancelled:
        return Movement(line, Buckets())
    released = line.reserved + line.cross_docked
    stock = Buckets(reserved=-line.reserved, cross_docked=-line.cross_docked, pending=released, backordered=-line.waiting)
    return Movement(replace(line, reserved=0, cross_docked=0, waiting=0, cancelled=True), stock, released)


def allocate_to_line(line: LineHolding, qty: int, cross_dock: bool) -> Movement:
    """Pending units the allocator gave a waiting line. Units it cannot take (the line was
    cancelled meanwhile, or waits for fewer) stay pending and are released again, so none is stuck."""
    taken = 0 if line.cancelled else min(qty, line.waiting)
    if cross_dock:
        stock = Buckets(pending=-taken, cross_docked=taken, backordered=-taken)
        held = replace(line, cross_docked=line.cross_docked + taken, waiting=line.waiting - taken)
    else:
        stock = Buckets(pending=-taken, reserved=taken, backordered=-taken)
        held = replace(line, reserved=line.reserved + taken, waiting=line.waiting - taken)
    return Movement(held, stock, released=qty - taken)


def ship_from_line(line: LineHolding, qty: int, source: Literal["cross_dock", "pick"]) -> Movement:
    """Units leave from the bucket the shipment names, then from the other one the line holds."""
    if line.cancelled:
        raise NotHeld("line is cancelled; its units went back to stock")
    if line.reserved + line.cross_docked < qty:
        raise NotHeld(f"line holds {line.reserved} reserved + {line.cross_docked} cross-docked units, shipment needs {qty}")
    if source == "cross_dock":
        from_dock = min(qty, line.cross_docked)
        from_shelf = qty - from_dock
    else:
        from_shelf = min(qty, line.reserved)
        from_dock = qty - from_shelf
    stock = Buckets(cross_docked=-from_dock, reserved=-from_shelf, shipped=qty)
    moved = replace(
        line, cross_docked=line.cross_docked - from_dock, reserved=line.reserved - from_shelf, shipped=line.shipped + qty
    )
    return Movement(moved, stock)


def awaits_allocation(line: LineHolding, qty: int) -> bool:
    """The line holds too few units to ship `qty`, but it still waits for enough: the allocator's
    decision is on its way, so the shipment should wait for it rather than fail."""
    return not line.cancelled and line.reserved + line.cross_docked + line.waiting >= qty


class NotEnoughStock(ValueError):
    pass


def count_delta(level: Buckets, delta: int) -> Buckets:
    """A stock count: found units go to the allocator (the book first); missing units leave the shelf."""
    if delta > 0:
        return Buckets(counted_in=delta, pending=delta)
    if level.available < -delta:
        raise NotEnoughStock(f"only {level.available} units available, cannot count out {-delta}")
    return Buckets(available=delta, counted_out=-delta)


def receipt_delta(qty: int) -> Buckets:
    return Buckets(received=qty, pending=qty)


def put_away_delta(qty: int) -> Buckets:
    return Buckets(pending=-qty, available=qty)


# --- receipts and purchase orders ---------------------------------------------------------------

ReceiptContent = tuple[str, str | None, tuple[tuple[str, int], ...]]


def receipt_content(warehouse: str, purchase_order_id: str | None, lines: Iterable[tuple[str, int]]) -> ReceiptContent:
    """What makes two reports of a receipt the same fact: the line order does not matter."""
    return (warehouse, purchase_order_id, tuple(sorted(lines)))


def received_per_sku(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for sku, qty in lines:
        totals[sku] += qty
    return dict(totals)


PurchaseOrderStatus = Literal["open", "cancelled", "closed"]


@dataclass(frozen=True)
class PurchaseOrderLine:
    sku: str
    qty_ordered: int
    qty_received: int = 0

    @property
    def qty_open(self) -> int:
        return max(self.qty_ordered - self.qty_received, 0)


class BelowReceived(ValueError):
    def __init__(self, sku: str, qty_received: int) -> None:
        super().__init__(f"{sku}: cannot order fewer than the {qty_received} units already received")
        self.sku = sku


@dataclass(frozen=True)
class PurchaseOrder:
    """Inbound supply: `version` grows with every change so consumers can drop stale copies."""

    id: str
    supplier: str
    expected_at: date
    lines: tuple[PurchaseOrderLine, ...]
    cancelled: bool = False
    version: int = 1

    @property
    def status(self) -> PurchaseOrderStatus:
        """Cancelled wins; an order with nothing left to arrive is closed."""
        if self.cancelled:
            return "cancelled"
        return "open" if any(line.qty_open > 0 for line in self.lines) else "closed"


def revise_lines(lines: Sequence[PurchaseOrderLine], ordered: Mapping[str, int]) -> tuple[PurchaseOrderLine, ...]:
    """New ordered quantities per SKU (new SKUs are added); a line never goes below what arrived."""
    current = {line.sku: line for line in lines}
    for sku, qty in ordered.items():
        if sku not in current and qty == 0:
            continue  # cutting a line the order never had changes nothing
        line = current.get(sku, PurchaseOrderLine(sku, 0))
        if qty < line.qty_received:
            raise BelowReceived(sku, line.qty_received)
        current[sku] = replace(line, qty_ordered=qty)
    return tuple(sorted(current.values(), key=lambda line: line.sku))


def receive_against(lines: Sequence[PurchaseOrderLine], received: Mapping[str, int]) -> tuple[PurchaseOrderLine, ...]:
    """Count arrivals against the order; SKUs it never ordered do not change it."""
    return tuple(replace(line, qty_received=line.qty_received + received.get(line.sku, 0)) for line in lines)


# --- availability for product pages -------------------------------------------------------------


@dataclass(frozen=True)
class InboundSupply:
    """Open units of one SKU on one purchase order."""

    purchase_order_id: str
    expected_at: date
    qty_open: int


class AvailabilityStatus(StrEnum):
    IN_STOCK = "in_stock"
    BACKORDER = "backorder"
    OUT_OF_STOCK = "out_of_stock"


@dataclass(frozen=True)
class Availability:
    status: AvailabilityStatus
    available: int
    expected_at: date | None = None


def expected_date(backordered: int, inbound: Iterable[InboundSupply]) -> date | None:
    """When a new backorder would arrive: the first purchase order (by date) whose cumulative
    open quantity goes beyond the units already waiting; None when nothing covers it."""
    cumulative = 0
    for supply in sorted(inbound, key=lambda s: (s.expected_at, s.purchase_order_id)):
        if supply.qty_open <= 0:
            continue
        cumulative += supply.qty_open
        if cumulative > backordered:
            return supply.expected_at
    return None


def availability(policy: SkuPolicy, available: int, backordered: int, inbound: Iterable[InboundSupply]) -> Availability:
    """What a product page shows. A SKU whose backorder cap is reached is out of stock: an order
    for it would be rejected."""
    if available > 0:
        return Availability(AvailabilityStatus.IN_STOCK, available)
    capped = policy.max_backorder_qty is not None and backordered >= policy.max_backorder_qty
    if policy.backorderable and not policy.discontinued and not capped:
        return Availability(AvailabilityStatus.BACKORDER, available, expected_date(backordered, inbound))
    return Availability(AvailabilityStatus.OUT_OF_STOCK, available)


# --- purchase suggestions -----------------------------------------------------------------------


@dataclass(frozen=True)
class SupplyPosition:
    """Everything the buyer needs to know about one SKU."""

    policy: SkuPolicy
    available: int
    backordered: int
    on_order: int


@dataclass(frozen=True)
class SuggestedLine:
    sku: str
    qty: int
    backordered: int
    on_order: int


@dataclass(frozen=True)
class SuggestedPurchaseOrder:
    supplier: str
    lines: tuple[SuggestedLine, ...]


def round_up(qty: int, multiple: int) -> int:
    return -(-qty // multiple) * multiple


def suggested_qty(position: SupplyPosition) -> int:
    """Units to buy: waiting demand not covered by open purchase orders, plus the safety stock
    not on the shelf, raised to the minimum order quantity and rounded up to whole case packs.
    A discontinued SKU keeps no safety stock: only its waiting customers are bought for."""
    policy = position.policy
    safety = 0 if policy.discontinued else policy.safety_stock
    need = position.backordered - position.on_order + safety - position.available
    if need <= 0:
        return 0
    return round_up(max(need, policy.min_order_qty), max(policy.case_pack, 1))


def purchase_suggestions(positions: Iterable[SupplyPosition]) -> list[SuggestedPurchaseOrder]:
    """One suggested purchase order per supplier; SKUs without a supplier cannot be bought."""
    per_supplier: dict[str, list[SuggestedLine]] = defaultdict(list)
    for position in positions:
        supplier = position.policy.supplier
        qty = suggested_qty(position)
        if supplier is None or qty == 0:
            continue
        per_supplier[supplier].append(SuggestedLine(position.policy.sku, qty, position.backordered, position.on_order))
    return [
        SuggestedPurchaseOrder(supplier, tuple(sorted(lines, key=lambda line: line.sku)))
        for supplier, lines in sorted(per_supplier.items())
    ]
