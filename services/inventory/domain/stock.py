"""Stock rules: what an ordered line gets from stock, what each line holds, and how units move
between a SKU's buckets. Pure, so the rules that prevent overselling are tested without I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from typing import Literal
from uuid import UUID

from shared.events import RejectionReason

BUCKETS = (
    "available", "reserved", "pending", "cross_docked", "shipped",
    "received", "counted_in", "counted_out", "backordered", "preordered",
)


@dataclass(frozen=True)
class Buckets:
    """Units of one SKU per bucket; the same shape serves as a stock level and as a change to one.

    `pending` holds units handed to the allocator that it has not decided yet (received at the
    dock, released by a cancellation or a count); `backordered` counts units waiting in the book
    and `preordered` units waiting for a release date: tallies, not places where units are, so
    they are outside the conservation equation.
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
    preordered: int = 0

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
    release_date: date | None = None
    """Until this day (UTC) the SKU is sold as a preorder: lines wait for the date, not for goods,
    and stock that arrives before it is held for them; from it on, the SKU sells as any other."""
    preorder_cap: int | None = None
    """Cap on units preordered across all orders; a line beyond it is rejected (`preorder_limit`)."""

    def on_preorder(self, today: date) -> bool:
        return self.release_date is not None and self.release_date > today


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
    preordered: int = 0
    release_date: date | None = None


def decide_line(
    line: RequestedLine, policy: SkuPolicy | None, available: int, backordered: int,
    preordered: int = 0, today: date | None = None,
) -> LineDecision:
    """Reserve what is on hand; the rest is backordered if the SKU's policy allows it. Before its
    release date (`today` given) a SKU's line is preordered whole: it takes no stock, since what
    arrives before the release is held for the preorders in the order they were placed."""
    if policy is None:
        return LineDecision(line.line_no, line.sku, line.qty, rejection=RejectionReason.UNKNOWN_SKU)
    if today is not None and policy.on_preorder(today):
        return decide_preorder(line, policy, preordered)
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


def decide_preorder(line: RequestedLine, policy: SkuPolicy, preordered: int) -> LineDecision:
    """A line for a SKU not released yet: preordered, unless discontinued or beyond the cap."""
    rejection: RejectionReason | None = None
    if policy.discontinued:
        rejection = RejectionReason.DISCONTINUED
    elif policy.preorder_cap is not None and preordered + line.qty > policy.preorder_cap:
        rejection = RejectionReason.PREORDER_LIMIT
    if rejection is not None:
        return LineDecision(line.line_no, line.sku, line.qty, rejection=rejection)
    return LineDecision(line.line_no, line.sku, line.qty, preordered=line.qty, release_date=policy.release_date)


class Shelf:
    """A SKU's stock as the lines decided so far left it: each line sees what the ones before it
    took (units available) and added (units waiting, for the backorder and preorder caps).
    `today` (UTC) tells a preorder from a backorder; without it every SKU counts as released."""

    def __init__(self, policies: Mapping[str, SkuPolicy], levels: Mapping[str, Buckets], today: date | None = None) -> None:
        self.policies = policies
        self.today = today
        self.available = {sku: level.available for sku, level in levels.items()}
        self.backordered = {sku: level.backordered for sku, level in levels.items()}
        self.preordered = {sku: level.preordered for sku, level in levels.items()}

    def decide(self, line: RequestedLine) -> LineDecision:
        available, backordered = self.available.get(line.sku, 0), self.backordered.get(line.sku, 0)
        preordered = self.preordered.get(line.sku, 0)
        decision = decide_line(line, self.policies.get(line.sku), available, backordered, preordered, self.today)
        self.available[line.sku] = available - decision.reserved
        self.backordered[line.sku] = backordered + decision.short
        self.preordered[line.sku] = preordered + decision.preordered
        return decision


def reserve_order(
    lines: Sequence[RequestedLine], policies: Mapping[str, SkuPolicy], levels: Mapping[str, Buckets], today: date | None = None
) -> list[LineDecision]:
    """Decide every line in order; later lines on a SKU see what earlier lines left."""
    shelf = Shelf(policies, levels, today)
    return [shelf.decide(line) for line in lines]


LineKey = tuple[UUID, int]  # (order id, line number)


def reserve_orders(
    orders: Sequence[tuple[UUID, Sequence[RequestedLine]]],
    policies: Mapping[str, SkuPolicy],
    levels: Mapping[str, Buckets],
    decided: Collection[LineKey] = (),
    today: date | None = None,
) -> list[list[LineDecision]]:
    """Decide every line of every order, in the orders' order (first come, first served), as if
    each were reserved alone after the ones before it; one list of decisions per order. A line
    already decided (`decided`: recorded before; or in an earlier copy of the same order, placed
    twice) is not decided again, so an order delivered twice reserves once."""
    shelf = Shelf(policies, levels, today)
    seen = set(decided)
    result = []
    for order_id, lines in orders:
        fresh = [line for line in lines if (order_id, line.line_no) not in seen]
        seen.update((order_id, line.line_no) for line in fresh)
        result.append([shelf.decide(line) for line in fresh])
    return result


@dataclass(frozen=True)
class Preorder:
    """A preordered line in its SKU's release queue, with what placing it in the backorder book
    will need if its release finds too little stock, and the release date the customer was told."""

    key: LineKey
    sku: str
    qty: int
    ordered_at: datetime
    tier: str
    partial_allowed: bool
    order_short_lines: int
    release_date: date


def release_preorders(
    preorders: Sequence[Preorder], policies: Mapping[str, SkuPolicy], levels: Mapping[str, Buckets]
) -> list[LineDecision]:
    """On the release day every preordered line is decided as if placed now, in the order the
    lines were placed (first come, first served): from the stock held for them, then the book."""
    shelf = Shelf(policies, levels)  # no `today`: the SKUs count as released
    return [shelf.decide(RequestedLine(p.key[1], p.sku, p.qty)) for p in preorders]


def repeats_line_no(lines: Iterable[RequestedLine]) -> bool:
    """An order naming a line number twice cannot be applied: line numbers identify its lines."""
    numbers = [line.line_no for line in lines]
    return len(set(numbers)) != len(numbers)


def shortfall_numbers(decisions: Iterable[LineDecision], first: Mapping[str, int]) -> list[int]:
    """Number the short lines per SKU from `first` (the SKU's next free number), in the order
    given, which is also the order their StockShort events leave in; 0 for lines not short."""
    following = dict(first)
    numbers = []
    for decision in decisions:
        if decision.short:
            numbers.append(following[decision.sku])
            following[decision.sku] += 1
        else:
            numbers.append(0)
    return numbers


def reservation_deltas(decisions: Iterable[LineDecision]) -> dict[str, Buckets]:
    """The change to each SKU's stock row that a set of decisions makes."""
    deltas: dict[str, Buckets] = defaultdict(Buckets)
    for decision in decisions:
        if decision.reserved or decision.short or decision.preordered:
            deltas[decision.sku] += Buckets(
                available=-decision.reserved, reserved=decision.reserved, backordered=decision.short,
                preordered=decision.preordered,
            )
    return dict(deltas)


def release_deltas(released: Iterable[LineDecision]) -> dict[str, Buckets]:
    """Preordered lines decided on their release date: they leave the preorder tally and take
    from stock (or wait in the book) like any placed line."""
    deltas = reservation_deltas(released)
    for decision in released:
        deltas[decision.sku] = deltas.get(decision.sku, Buckets()) + Buckets(preordered=-decision.qty)
    return deltas


# --- what one order line holds, and how events move it -----------------------------------------


@dataclass(frozen=True)
class LineHolding:
    sku: str
    reserved: int = 0
    cross_docked: int = 0
    shipped: int = 0
    waiting: int = 0
    cancelled: bool = False
    short_seq: int = 0  # which of its SKU's shortfalls it waits on (see shortfall_numbers)
    preordered: int = 0  # units waiting for the SKU's release date

    @classmethod
    def decided(cls, decision: LineDecision, short_seq: int) -> LineHolding:
        return cls(decision.sku, reserved=decision.reserved, waiting=decision.short, short_seq=short_seq,
                   preordered=decision.preordered)


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
    stock = Buckets(reserved=-line.reserved, cross_docked=-line.cross_docked, pending=released, backordered=-line.waiting,
                    preordered=-line.preordered)
    return Movement(replace(line, reserved=0, cross_docked=0, waiting=0, preordered=0, cancelled=True), stock, released)


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


