"""The state changes of inventory, shared by its event handlers and its HTTP routes: load and lock,
let the pure rules decide, write, emit. Errors that can never succeed are `Unapplicable`."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from typing import Literal

from sqlalchemy import text

from services.inventory import domain, ledger, purchasing
from services.inventory.domain import Buckets, LineHolding, NotHeld, RequestedLine
from shared.bus.outbox import UnitOfWork
from shared.events import (
    BackorderAllocated,
    GoodsPutAway,
    GoodsReceived,
    LineCancelled,
    LineRejected,
    OrderPlaced,
    Shipped,
    StockReserved,
    StockShort,
)

log = logging.getLogger("inventory")


class Unapplicable(Exception):
    """The event or request refers to something that does not exist or contradicts what is recorded."""


class UnknownSku(Unapplicable):
    def __init__(self, sku: str, field: str = "sku") -> None:
        super().__init__(f"unknown sku {sku}")
        self.sku = sku
        self.field = field


class UnknownPurchaseOrder(Unapplicable):
    def __init__(self, po_id: str) -> None:
        super().__init__(f"unknown purchase order {po_id}")


class ReceiptConflict(Unapplicable):
    def __init__(self) -> None:
        super().__init__("duplicate receipt id with different content")


# --- orders -------------------------------------------------------------------------------------


async def reserve_order(uow: UnitOfWork, event: OrderPlaced) -> None:
    """Reserve what is on hand per line, report the backorderable shortfall, reject the rest."""
    line_nos = [line.line_no for line in event.lines]
    if len(set(line_nos)) != len(line_nos):
        raise Unapplicable(f"order {event.order_id} repeats a line number")
    # The rows stay locked until commit, so the rule decides on stock nobody else can take
    # meanwhile: two orders never both get the last unit (see ledger's docstring).
    levels, policies = await ledger.lock_stock_with_policies(uow.session, (line.sku for line in event.lines))
    # Lines already recorded (the same order under another event id, or a tombstone of a line
    # cancelled before we saw it) are not decided again.
    known = await ledger.lock_lines(uow.session, ((event.order_id, n) for n in line_nos))
    fresh = [
        RequestedLine(line.line_no, line.sku, line.qty) for line in event.lines if (event.order_id, line.line_no) not in known
    ]
    if not fresh:
        return
    decisions = domain.reserve_order(fresh, policies, levels)
    await ledger.apply_deltas(uow.session, domain.reservation_deltas(decisions))
    next_seq = await ledger.number_shortfalls(uow.session, Counter(d.sku for d in decisions if d.short))
    short_seq: dict[int, int] = {}
    for d in decisions:
        if d.short:
            short_seq[d.line_no] = next_seq[d.sku]
            next_seq[d.sku] += 1
    holdings = {
        (event.order_id, d.line_no): LineHolding(
            d.sku, reserved=d.reserved, waiting=d.short, short_seq=short_seq.get(d.line_no, 0)
        )
        for d in decisions
    }
    rejections = {(event.order_id, d.line_no): d.rejection.value for d in decisions if d.rejection}
    await ledger.save_lines(uow.session, holdings, rejections)
    short_lines = sum(1 for d in decisions if d.short)
    for d in decisions:
        if d.rejection:
            uow.emit(LineRejected(order_id=event.order_id, line_no=d.line_no, sku=d.sku, qty=d.qty, reason=d.rejection))
        if d.reserved:
            uow.emit(StockReserved(order_id=event.order_id, line_no=d.line_no, sku=d.sku, qty=d.reserved))
        if d.short:
            uow.emit(StockShort(
                order_id=event.order_id, line_no=d.line_no, sku=d.sku, qty_short=d.short, qty_reserved=d.reserved,
                ordered_at=event.placed_at, customer_tier=event.customer.tier,
                partial_allowed=event.partial_allowed, order_short_lines=short_lines, short_seq=short_seq[d.line_no],
            ))


async def cancel_line(uow: UnitOfWork, event: LineCancelled) -> None:
    """Held units go back to the allocator; a line not seen yet is remembered as cancelled."""
    key = (event.order_id, event.line_no)
    await ledger.lock_stock(uow.session, [event.sku])
    line = (await ledger.lock_lines(uow.session, [key])).get(key)
    if line is None:
        await ledger.save_lines(uow.session, {key: LineHolding(event.sku, cancelled=True)})
        return
    if line.sku != event.sku:
        raise Unapplicable(f"line {event.line_no} of order {event.order_id} is for {line.sku}, not {event.sku}")
    move = domain.cancel_line(line)
    await ledger.apply_deltas(uow.session, {line.sku: move.stock})
    await ledger.save_lines(uow.session, {key: move.line})
    await ledger.release(uow, line.sku, move.released, "cancellation")


async def ship(uow: UnitOfWork, event: Shipped) -> None:
    """Units leave the building; each (shipment, line, source) moves its units once. A shipment of
    units still on their way to the line (its BackorderAllocated comes on another topic, and may
    come later) is parked until they arrive, not dead-lettered."""
    sources = [(line.line_no, line.source) for line in event.lines]
    if len(set(sources)) != len(sources):
        raise Unapplicable(f"shipment {event.shipment_id} names a line twice with the same source")
    # Locked before reading what was shipped already: a copy of this shipment applied while we
    # waited (e.g. unparked by an allocation) must be seen, not shipped a second time.
    await ledger.lock_stock(uow.session, (line.sku for line in event.lines))
    done = {
        (row.line_no, row.source)
        for row in await uow.session.execute(
            text("SELECT line_no, source FROM shipment_line WHERE shipment_id = :id"), {"id": event.shipment_id}
        )
    }
    todo = [line for line in event.lines if (line.line_no, line.source) not in done]
    if not todo:
        return
    holdings = await ledger.lock_lines(uow.session, ((event.order_id, line.line_no) for line in todo))
    deltas: dict[str, Buckets] = defaultdict(Buckets)
    moved: dict[ledger.LineKey, LineHolding] = {}
    for shipped in todo:
        key = (event.order_id, shipped.line_no)
        line = moved.get(key) or holdings.get(key)
        if line is None or line.sku != shipped.sku:
            raise Unapplicable(f"order {event.order_id} line {shipped.line_no} ({shipped.sku}) holds no units here")
        try:
            move = domain.ship_from_line(line, shipped.qty, shipped.source)
        except NotHeld as error:
            if domain.awaits_allocation(line, shipped.qty):
                log.info("shipment %s waits for units allocated to order %s", event.shipment_id, event.order_id)
                await ledger.park(uow.session, ledger.awaiting_order(event.order_id), event)
                return
            raise Unapplicable(f"order {event.order_id} line {shipped.line_no}: {error}") from error
        moved[key] = move.line
        deltas[shipped.sku] += move.stock
    await ledger.apply_deltas(uow.session, deltas)
    await ledger.save_lines(uow.session, moved)
    rows = [
        {
            "shipment_id": event.shipment_id, "line_no": s.line_no, "order_id": event.order_id,
            "sku": s.sku, "qty": s.qty, "source": s.source,
        }
        for s in todo
    ]
    await uow.session.execute(
        text(
            "INSERT INTO shipment_line (shipment_id, line_no, order_id, sku, qty, source) "
            "VALUES (:shipment_id, :line_no, :order_id, :sku, :qty, :source)"
        ),
        rows,
    )


# --- the allocator's decisions about pending units ----------------------------------------------


async def _pending_units(uow: UnitOfWork, event: BackorderAllocated | GoodsPutAway, line: ledger.LineKey | None) -> bool:
    """Lock the receipt (for a receipt's decision) and the SKU's row; False when the decision must
    wait for its receipt to be recorded (it is parked) or was applied already."""
    if event.source == "receipt":
        await ledger.lock_receipt(uow.session, event.source_id)
    level = (await ledger.lock_stock(uow.session, [event.sku])).get(event.sku)
    if event.source == "receipt" and not await ledger.receipt_recorded(uow.session, event.source_id):
        # The allocator read a receipt from the topic before we did (or we dead-lettered it, e.g.
        # for a SKU not registered yet, which may be this one): apply this when it is recorded.
        await ledger.park(uow.session, ledger.awaiting_receipt(event.source_id), event)
        return False
    if level is None:
        raise UnknownSku(event.sku)
    if not await ledger.first_decision(uow.session, event.source_id, event.sku, line, event.qty):
        log.info("%s of %s from %s already applied", event.event_type, event.sku, event.source_id)
        return False
    if level.pending < event.qty:
        raise Unapplicable(f"{event.sku}: {event.qty} units decided but only {level.pending} pending")
    return True


async def allocate_backorder(uow: UnitOfWork, event: BackorderAllocated) -> None:
    """Pending units go to a waiting line: to the shipping dock, or held on the shelf."""
    key = (event.order_id, event.line_no)
    if not await _pending_units(uow, event, key):
        return
    line = (await ledger.lock_lines(uow.session, [key])).get(key)
    if line is None:
        log.warning("allocation of %d %s to unknown line %s; releasing it", event.qty, event.sku, key)
        await ledger.release(uow, event.sku, event.qty, "unclaimed")
        return
    move = domain.allocate_to_line(line, event.qty, event.cross_dock)
    await ledger.apply_deltas(uow.session, {event.sku: move.stock})
    await ledger.save_lines(uow.session, {key: move.line})
    await ledger.release(uow, event.sku, move.released, "cancellation" if line.cancelled else "unclaimed")
    for _, payload in await ledger.unpark(uow.session, ledger.awaiting_order(event.order_id)):
        await ship(uow, Shipped.model_validate(payload))  # parks itself again if units are still missing


async def put_away(uow: UnitOfWork, event: GoodsPutAway) -> None:
    """What nobody waits for goes on the shelf, available to new orders; inventory, which numbers
    every shortfall, decides what that is. The allocator's put-away says which shortfalls it had
    booked (`shorts_seen`); units for lines reported short after those (StockShort and the receipt
    travel on different topics, and either may lag) go back to the book as a release instead:
    backordered customers come first.

    Every put-away is judged against what still waits, so any number of put-aways decided before
    the allocator caught up each hand back what those lines need. Cannot bounce forever: the
    release travels on the SKU's partition behind those StockShorts, so the allocator has booked
    them when it reads it, and a put-away of the release names them as seen. A unit released for
    a line that another release serves first comes back once, and is shelved then."""
    if not await _pending_units(uow, event, None):
        return
    to_book = min(event.qty, await ledger.unseen_shortfall_units(uow.session, event.sku, event.shorts_seen))
    await ledger.apply_deltas(uow.session, {event.sku: domain.put_away_delta(event.qty - to_book)})
    from_dock = event.source_id if event.source == "receipt" else None  # never shelved: they may still cross-dock
    await ledger.release(uow, event.sku, to_book, "backordered meanwhile", receipt_id=from_dock)


# --- receipts and counts ------------------------------------------------------------------------

FIND_RECEIPT = text("SELECT warehouse, purchase_order_id, lines FROM receipt WHERE receipt_id = :id")
INSERT_RECEIPT = text(
    "INSERT INTO receipt (receipt_id, warehouse, purchase_order_id, lines, received_at, via) "
    "VALUES (:id, :warehouse, :po, CAST(:lines AS jsonb), :received_at, :via) "
    "ON CONFLICT (receipt_id) DO NOTHING RETURNING receipt_id"
)


async def _known_receipt(uow: UnitOfWork, receipt: GoodsReceived, content: domain.ReceiptContent) -> bool:
    row = (await uow.session.execute(FIND_RECEIPT, {"id": receipt.receipt_id})).first()
    if row is None:
        return False
    if domain.receipt_content(row.warehouse, row.purchase_order_id, ((s, q) for s, q in row.lines)) != content:
        raise ReceiptConflict()
    return True


async def receive_goods(
    uow: UnitOfWork, receipt: GoodsReceived, via: Literal["http", "topic"]
) -> Literal["recorded", "replayed"]:
    """Record a receipt once (same id, same content: a replay); its units go to the allocator,
    which serves the backorder book first. The one way in for HTTP and topic receipts alike."""
    pairs = [(line.sku, line.qty) for line in receipt.lines]
    await ledger.lock_receipt(uow.session, receipt.receipt_id)
    content = domain.receipt_content(receipt.warehouse, receipt.purchase_order_id, pairs)
    if await _known_receipt(uow, receipt, content):
        return "replayed"
    policies = await ledger.load_policies(uow.session, (sku for sku, _ in pairs))
    for index, (sku, _) in enumerate(pairs):
        if sku not in policies:
            raise UnknownSku(sku, field=f"lines.{index}.sku")
    po_id = receipt.purchase_order_id
    against_po = po_id is not None and await purchasing.load(uow.session, po_id) is not None
    if po_id is not None and not against_po:
        if via == "http":
            raise UnknownPurchaseOrder(po_id)
        # On the topic the allocator has read this receipt too and serves the book with it: the
        # goods are in the building, so count them; only the purchase order goes unmatched.
        log.warning("receipt %s names unknown purchase order %s: units counted, none served", receipt.receipt_id, po_id)
    params = {
        "id": receipt.receipt_id, "warehouse": receipt.warehouse, "po": po_id,
        "lines": json.dumps(pairs), "received_at": receipt.received_at, "via": via,
    }
    if (await uow.session.execute(INSERT_RECEIPT, params)).first() is None:
        await _known_receipt(uow, receipt, content)  # recorded concurrently: a replay or a clash
        return "replayed"
    per_sku = domain.received_per_sku(pairs)
    await ledger.lock_stock(uow.session, per_sku)
    await ledger.apply_deltas(uow.session, {sku: domain.receipt_delta(qty) for sku, qty in per_sku.items()})
    if po_id is not None and against_po:
        await purchasing.receive(uow, po_id, per_sku)
    for event_type, payload in await ledger.unpark(uow.session, ledger.awaiting_receipt(receipt.receipt_id)):
        if event_type == BackorderAllocated.event_type:
            await allocate_backorder(uow, BackorderAllocated.model_validate(payload))
        else:
            await put_away(uow, GoodsPutAway.model_validate(payload))
    return "recorded"


async def adjust_count(uow: UnitOfWork, sku: str, delta: int, reason: str) -> Buckets:
    """A stock count: units found serve the backorder book first (through the allocator); units
    missing leave the shelf. Returns the stock row after the change."""
    levels = await ledger.lock_stock(uow.session, [sku])
    if sku not in levels:
        raise UnknownSku(sku)
    change = domain.count_delta(levels[sku], delta)  # raises NotEnoughStock
    await ledger.apply_deltas(uow.session, {sku: change})
    release_id = await ledger.release(uow, sku, delta, "count")
    await uow.session.execute(
        text("INSERT INTO stock_adjustment (sku, delta, reason, release_id) VALUES (:sku, :delta, :reason, :release_id)"),
        {"sku": sku, "delta": delta, "reason": reason, "release_id": release_id},
    )
    return levels[sku] + change
