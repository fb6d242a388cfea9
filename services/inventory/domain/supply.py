"""Supply rules: purchase orders and their revisions, what the supplier says about them, receipts,
what a product page shows and what to buy. Pure, like the stock rules it builds on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from services.inventory.domain.stock import SkuPolicy

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


class SupplierState(StrEnum):
    """Where the goods are by the supplier's word, in the only order a purchase order can go
    through them (it may skip some: open -> shipped, or open -> received by receipts)."""

    OPEN = "open"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    RECEIVED = "received"

    @property
    def rank(self) -> int:
        return list(SupplierState).index(self)


@dataclass(frozen=True)
class SupplierStep:
    """A supplier-side state a purchase order reached and when; a shipment may name its carrier
    and tracking reference."""

    state: SupplierState
    at: datetime
    carrier: str | None = None
    tracking: str | None = None


@dataclass(frozen=True)
class PurchaseOrder:
    """Inbound supply: `version` grows with every change so consumers can drop stale copies.
    `supplier_history` holds the supplier-side states reached, oldest first (empty only for an
    order built without one: it is then `open`, since no time)."""

    id: str
    supplier: str
    expected_at: date
    lines: tuple[PurchaseOrderLine, ...]
    cancelled: bool = False
    version: int = 1
    supplier_history: tuple[SupplierStep, ...] = ()

    @property
    def status(self) -> PurchaseOrderStatus:
        """Cancelled wins; an order with nothing left to arrive is closed."""
        if self.cancelled:
            return "cancelled"
        return "open" if any(line.qty_open > 0 for line in self.lines) else "closed"

    @property
    def supplier_step(self) -> SupplierStep | None:
        """The supplier-side state the order is in, and since when."""
        return self.supplier_history[-1] if self.supplier_history else None

    @property
    def supplier_state(self) -> SupplierState:
        step = self.supplier_step
        return step.state if step else SupplierState.OPEN

    @property
    def shipment(self) -> SupplierStep | None:
        """How the goods travel, once the supplier said they shipped."""
        return next((step for step in self.supplier_history if step.state is SupplierState.SHIPPED), None)


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


def new_lines(ordered: Iterable[tuple[str, int]]) -> tuple[PurchaseOrderLine, ...]:
    """A new purchase order's lines, in SKU order (as they are stored and announced)."""
    return tuple(sorted((PurchaseOrderLine(sku, qty) for sku, qty in ordered), key=lambda line: line.sku))


def sku_line_problem(skus: Sequence[str], known: Collection[str]) -> tuple[int, str] | None:
    """Purchase order lines name known SKUs, one line each: the first line that does not, and why."""
    seen: set[str] = set()
    for index, sku in enumerate(skus):
        if sku not in known:
            return index, f"unknown sku {sku}"
        if sku in seen:
            return index, f"sku {sku} appears twice; give one line per sku"
        seen.add(sku)
    return None


def receive_against(lines: Sequence[PurchaseOrderLine], received: Mapping[str, int]) -> tuple[PurchaseOrderLine, ...]:
    """Count arrivals against the order; SKUs it never ordered do not change it."""
    return tuple(replace(line, qty_received=line.qty_received + received.get(line.sku, 0)) for line in lines)


# --- the supplier's side of a purchase order -----------------------------------------------------

# A supplier's clock may run a little ahead of ours: a time up to this far ahead is taken as given.
CLOCK_SKEW = timedelta(minutes=5)


class SupplierStepRefused(ValueError):
    """The purchase order cannot take this supplier-side state at all (a 409)."""


class SupplierTimeRefused(ValueError):
    """The state could be taken, but not at the time given (a 422 naming the time)."""


def new_purchase_order(
    po_id: str, supplier: str, expected_at: date, ordered: Iterable[tuple[str, int]], at: datetime
) -> PurchaseOrder:
    """A purchase order as it is placed: `open` with the supplier since `at`."""
    opened = SupplierStep(SupplierState.OPEN, at)
    return PurchaseOrder(po_id, supplier, expected_at, new_lines(ordered), supplier_history=(opened,))


def report_supplier_step(order: PurchaseOrder, step: SupplierStep, now: datetime) -> PurchaseOrder:
    """The supplier says the order reached `step.state` (confirmed, shipped) at `step.at`. Only
    forward, only while goods are still to come, and never dated before the state it leaves nor
    in the future, so the history is in time order. `received` is not reported: receipts of every
    line make it (settle_received)."""
    current = order.supplier_step
    state = order.supplier_state
    if step.state is SupplierState.RECEIVED:
        raise SupplierStepRefused(f"purchase order {order.id} becomes received when every line has arrived, by receipts")
    if order.status != "open":
        raise SupplierStepRefused(
            f"purchase order {order.id} is {order.status} (supplier state {state}): it takes no supplier change"
        )
    if step.state.rank <= state.rank:
        since = f" since {current.at.isoformat()}" if current else ""
        why = (
            "each state is reported once (the same request again is a replay)" if step.state is state
            else f"a supplier state never goes back to {step.state}"
        )
        raise SupplierStepRefused(f"purchase order {order.id} is already {state}{since}: {why}")
    if step.at > now + CLOCK_SKEW:
        raise SupplierTimeRefused(f"{step.at.isoformat()} is in the future (now is {now.isoformat()})")
    if current is not None and step.at < current.at:
        raise SupplierTimeRefused(
            f"{step.at.isoformat()} is before the purchase order became {current.state} ({current.at.isoformat()})"
        )
    return replace(order, supplier_history=(*order.supplier_history, step))


def fully_received(lines: Sequence[PurchaseOrderLine]) -> bool:
    """Every line has all it ordered (a line cut to nothing counts), and something arrived."""
    return all(line.qty_received >= line.qty_ordered for line in lines) and any(line.qty_received for line in lines)


def settle_received(order: PurchaseOrder, at: datetime) -> PurchaseOrder:
    """Once every line has arrived the order is `received` on the supplier's side too, at `at`
    (the receipt's time), or at its last state's time if that is later: receipts report their own
    clock, and the history stays in time order. A cancelled order takes no supplier change."""
    if order.cancelled or order.supplier_state is SupplierState.RECEIVED or not fully_received(order.lines):
        return order
    current = order.supplier_step
    when = max(at, current.at) if current else at
    return replace(order, supplier_history=(*order.supplier_history, SupplierStep(SupplierState.RECEIVED, when)))


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
    PREORDER = "preorder"
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


def availability(
    policy: SkuPolicy, available: int, backordered: int, inbound: Iterable[InboundSupply], preordered: int = 0,
    today: date | None = None,
) -> Availability:
    """What a product page shows. A SKU whose backorder cap is reached is out of stock: an order
    for it would be rejected. Before its release date a SKU is a preorder, expected on that date,
    whatever stock is held for it (out of stock once discontinued or at its preorder cap)."""
    if today is not None and policy.on_preorder(today):
        capped = policy.preorder_cap is not None and preordered >= policy.preorder_cap
        if policy.discontinued or capped:
            return Availability(AvailabilityStatus.OUT_OF_STOCK, 0)
        return Availability(AvailabilityStatus.PREORDER, 0, policy.release_date)
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
