"""Everything that changes inventory, and the only place it emits: one function per command (SKU
policy, count, purchase orders, receipts) and per consumed event. Each locks and loads through
`store`, lets `domain` decide, saves through `store`, and emits.

Placed orders are reserved a run at a time (a flash sale's burst of OrderPlaced is one call): the
run's stock rows are locked once, a pure function decides every line in event order, and the
result is written with a few statements, however many orders the run holds."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Literal
from uuid import UUID, uuid4

from services.inventory import store
from services.inventory.domain.stock import (
    Buckets,
    LineDecision,
    LineHolding,
    LineKey,
    NotEnoughStock,
    NotHeld,
    Preorder,
    RequestedLine,
    SkuPolicy,
    allocate_to_line,
    awaits_allocation,
    cancel_line,
    count_delta,
    put_away_delta,
    receipt_delta,
    release_deltas,
    release_preorders,
    repeats_line_no,
    reservation_deltas,
    reserve_orders,
    ship_from_line,
    shortfall_numbers,
)
from services.inventory.domain.supply import (
    BelowReceived,
    PurchaseOrder,
    ReceiptContent,
    SupplierState,
    SupplierStep,
    SupplierStepRefused,
    SupplierTimeRefused,
    new_purchase_order,
    receipt_content,
    receive_against,
    received_per_sku,
    report_supplier_step,
    revise_lines,
    settle_received,
    sku_line_problem,
)
from services.inventory.schemas import PurchaseOrderConfirm, PurchaseOrderCreate, PurchaseOrderPatch, PurchaseOrderShip
from shared.bus.handlers import DeadLetter, Handlers, each
from shared.bus.outbox import UnitOfWork
from shared.events import (
    BackorderAllocated,
    Envelope,
    GoodsPutAway,
    GoodsReceived,
    LineCancelled,
    LinePreordered,
    LineRejected,
    OrderPlaced,
    PurchaseOrderChanged,
    Shipped,
    StockReleased,
    StockReserved,
    StockShort,
    utc_now,
)
from shared.events import PurchaseOrderLine as OpenLine

log = logging.getLogger("inventory")


class Unapplicable(DeadLetter):
    """Refers to something that does not exist or contradicts what is recorded: retrying cannot
    fix it. A consumed event that raises it is dead-lettered; a request gets a 4xx."""


class NotFound(Unapplicable):
    pass


class Conflict(Unapplicable):
    pass


class Invalid(Unapplicable):
    """A request's field names something unusable (`field` is dotted: `lines.0.sku`)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


class UnknownSku(Invalid):
    def __init__(self, sku: str, field: str = "sku") -> None:
        super().__init__(field, f"unknown sku {sku}")
        self.sku = sku


# --- commands: SKU policy and counts ------------------------------------------------------------


async def put_sku_policy(uow: UnitOfWork, policy: SkuPolicy, today: date | None = None) -> bool:
    """Create or update a SKU's policy; a new SKU starts with an empty stock row. True when new.
    A release date moved to another future day re-dates the lines preordered so far, and each
    customer is told (LinePreordered with the date before); one moved to today or earlier, or
    taken away, releases them instead (see `release_preorders_due`)."""
    today = today or datetime.now(UTC).date()
    created = await store.upsert_policy(uow.session, policy)
    if policy.on_preorder(today) and policy.release_date is not None:
        await store.lock_stock(uow.session, [policy.sku])  # serialised with a release of the same SKU
        for preorder in await store.waiting_preorders(uow.session, [policy.sku]):
            if preorder.release_date != policy.release_date:
                order_id, line_no = preorder.key
                uow.emit(LinePreordered(order_id=order_id, line_no=line_no, sku=preorder.sku, qty=preorder.qty,
                                        release_date=policy.release_date, previous_release_date=preorder.release_date),
                         correlation_id=str(order_id))
        await store.retell_release(uow.session, policy.sku, policy.release_date)
    return created


async def release_preorders_due(uow: UnitOfWork, today: date | None = None) -> int:
    """Release day: every SKU whose release date has come decides its preordered lines in the order
    they were placed: reserved from the stock held for them, short (into the backorder book, at
    their order time), or rejected, announced as a placed line's are. Returns the lines released."""
    today = today or datetime.now(UTC).date()
    skus = await store.release_due(uow.session, today)
    if not skus:
        return 0
    levels, policies = await store.lock_stock_with_policies(uow.session, skus)
    queued = [p for p in await store.waiting_preorders(uow.session, skus) if not policies[p.sku].on_preorder(today)]
    lines = await store.lock_lines(uow.session, (p.key for p in queued))
    due = [p for p in queued if p.key in lines and lines[p.key].preordered > 0 and not lines[p.key].cancelled]
    decisions = release_preorders(due, policies, levels)
    await store.apply_deltas(uow.session, release_deltas(decisions))
    first = await store.number_shortfalls(uow.session, Counter(d.sku for d in decisions if d.short))
    holdings: dict[LineKey, LineHolding] = {}
    for preorder, decision, short_seq in zip(due, decisions, shortfall_numbers(decisions, first), strict=True):
        held = lines[preorder.key]
        holdings[preorder.key] = replace(held, preordered=0, reserved=held.reserved + decision.reserved, waiting=decision.short,
                                         short_seq=short_seq)
        placed = Placed(preorder.key[0], preorder.ordered_at, preorder.tier, preorder.partial_allowed, preorder.order_short_lines)
        announce_decision(uow, placed, decision, short_seq)
    await store.save_lines(uow.session, holdings)
    await store.mark_released(uow.session, [p.key for p in queued])
    if due:
        log.info("released %d preordered lines of %s", len(due), ", ".join(sorted({p.sku for p in due})))
    return len(due)


async def adjust_count(uow: UnitOfWork, sku: str, delta: int, reason: str) -> Buckets:
    """A stock count: units found serve the backorder book first (through the allocator); units
    missing leave the shelf. Returns the stock row after the change."""
    levels = await store.lock_stock(uow.session, [sku])
    if sku not in levels:
        raise UnknownSku(sku)
    try:
        change = count_delta(levels[sku], delta)
    except NotEnoughStock as error:
        raise Conflict(str(error)) from error
    await store.apply_deltas(uow.session, {sku: change})
    release_id = await _release(uow, sku, delta, "count")
    await store.insert_adjustment(uow.session, sku, delta, reason, release_id)
    return levels[sku] + change


async def _release(uow: UnitOfWork, sku: str, qty: int, reason: str, receipt_id: str | None = None) -> UUID | None:
    """Announce units put back in `pending` (the caller's delta did that) so the allocator serves
    the backorder book with them first and puts the rest away. `receipt_id`: the units are that
    receipt's, still at the dock, so they may go straight to shipping."""
    if qty <= 0:
        return None
    release_id = uuid4()
    await store.insert_release(uow.session, release_id, sku, qty, reason)
    uow.emit(StockReleased(release_id=release_id, sku=sku, qty=qty, reason=reason, receipt_id=receipt_id))
    return release_id


# --- commands: purchase orders (every change announced in full, so the allocator re-dates the book
# from the latest copy) ---------------------------------------------------------------------------


async def create_purchase_order(uow: UnitOfWork, body: PurchaseOrderCreate) -> tuple[PurchaseOrder, bool]:
    """Inbound supply with its expected date; True when it replays an identical create (the same
    id with another body is a Conflict)."""
    request = body.model_dump(mode="json")
    stored = await store.load_purchase_order(uow.session, body.id)
    if stored is None:
        _not_in_past(body.expected_at)
        await _check_skus(uow, [line.sku for line in body.lines])
        ordered = ((line.sku, line.qty) for line in body.lines)
        order = new_purchase_order(body.id, body.supplier, body.expected_at, ordered, utc_now())
        if await store.insert_purchase_order(uow.session, order, request):
            uow.emit(_changed(order, "created"), correlation_id=order.id)
            return order, False
        stored = await store.load_purchase_order(uow.session, body.id)  # created concurrently
        assert stored is not None
    order, original = stored
    if original != request:
        raise Conflict(f"purchase order {order.id} already exists with different content")
    return order, True


async def patch_purchase_order(uow: UnitOfWork, po_id: str, body: PurchaseOrderPatch) -> PurchaseOrder:
    """Move the expected date or change ordered quantities (per SKU; 0 cuts a line, never below
    what arrived). A change announces the new state; a request that changes nothing does not."""
    order = await _lock_purchase_order(uow, po_id)
    if order.cancelled:
        raise Conflict(f"purchase order {po_id} is cancelled")
    changed = order
    if body.expected_at is not None and body.expected_at != order.expected_at:
        _not_in_past(body.expected_at)
        changed = replace(changed, expected_at=body.expected_at)
    if body.lines is not None:
        await _check_skus(uow, [line.sku for line in body.lines])
        try:
            changed = replace(changed, lines=revise_lines(order.lines, {line.sku: line.qty for line in body.lines}))
        except BelowReceived as error:
            raise Conflict(str(error)) from error
    return await _save_purchase_order(uow, changed, "updated") if changed != order else order


async def cancel_purchase_order(uow: UnitOfWork, po_id: str) -> PurchaseOrder:
    """Nothing more will arrive on it; the waiting lines it covered lose that date. Idempotent."""
    order = await _lock_purchase_order(uow, po_id)
    if order.status == "closed":
        raise Conflict(f"purchase order {po_id} is fully received and cannot be cancelled")
    return order if order.cancelled else await _save_purchase_order(uow, replace(order, cancelled=True), "cancelled")


async def confirm_purchase_order(uow: UnitOfWork, po_id: str, body: PurchaseOrderConfirm) -> PurchaseOrder:
    """The supplier confirmed the order (at `confirmed_at`, or now), perhaps with a new expected date."""
    now = utc_now()
    step = SupplierStep(SupplierState.CONFIRMED, body.confirmed_at or now)
    return await _report_supplier_step(uow, po_id, step, body.expected_at, body.model_dump(mode="json"), now)


async def ship_purchase_order(uow: UnitOfWork, po_id: str, body: PurchaseOrderShip) -> PurchaseOrder:
    """The supplier shipped the goods (at `shipped_at`, or now), with the carrier and tracking
    reference when given, perhaps with a new expected date."""
    now = utc_now()
    step = SupplierStep(SupplierState.SHIPPED, body.shipped_at or now, body.carrier, body.tracking)
    return await _report_supplier_step(uow, po_id, step, body.expected_at, body.model_dump(mode="json"), now)


async def _report_supplier_step(
    uow: UnitOfWork, po_id: str, step: SupplierStep, expected_at: date | None, report: dict[str, object], now: datetime
) -> PurchaseOrder:
    """Record and announce a supplier-side state. The request that reported it, sent again, is a
    replay: the order as it is now, nothing changed, whatever happened since; another request for
    a state the order has reached or passed is a Conflict."""
    order = await _lock_purchase_order(uow, po_id)
    if await store.supplier_report(uow.session, po_id, step.state) == report:
        return order
    try:
        changed = report_supplier_step(order, step, now)
    except SupplierStepRefused as error:
        raise Conflict(str(error)) from error
    except SupplierTimeRefused as error:
        raise Invalid(f"{step.state}_at", str(error)) from error
    if expected_at is not None and expected_at != order.expected_at:
        _not_in_past(expected_at)
        changed = replace(changed, expected_at=expected_at)
    return await _save_purchase_order(uow, changed, step.state.value, report=report)


def _not_in_past(expected_at: date) -> None:
    today = datetime.now(UTC).date()
    if expected_at < today:
        raise Invalid("expected_at", f"{expected_at} is in the past (today is {today} UTC)")


async def _check_skus(uow: UnitOfWork, skus: list[str]) -> None:
    problem = sku_line_problem(skus, await store.load_policies(uow.session, skus))
    if problem is not None:
        index, reason = problem
        raise Invalid(f"lines.{index}.sku", reason)


async def _lock_purchase_order(uow: UnitOfWork, po_id: str) -> PurchaseOrder:
    stored = await store.load_purchase_order(uow.session, po_id, lock=True)
    if stored is None:
        raise NotFound(f"unknown purchase order {po_id}")
    return stored[0]


async def _save_purchase_order(
    uow: UnitOfWork, order: PurchaseOrder, change: str, *, at: datetime | None = None, report: dict[str, object] | None = None
) -> PurchaseOrder:
    """Store a changed purchase order (locked) as its next version and announce it. Whatever change
    completes its lines makes it `received` on the supplier's side, at `at` (a receipt's time) or
    now. `report`: the request that reported its newest supplier state, kept to recognise a replay."""
    saved = replace(settle_received(order, at or utc_now()), version=order.version + 1)
    await store.update_purchase_order(uow.session, saved, report)
    uow.emit(_changed(saved, change, await store.receipts_of(uow.session, saved.id)), correlation_id=saved.id)
    return saved


def _changed(order: PurchaseOrder, change: str, receipt_ids: tuple[str, ...] = ()) -> PurchaseOrderChanged:
    step, shipment = order.supplier_step, order.shipment
    return PurchaseOrderChanged(
        purchase_order_id=order.id, version=order.version, supplier=order.supplier, status=order.status,
        expected_at=order.expected_at, lines=tuple(OpenLine(sku=line.sku, qty_open=line.qty_open) for line in order.lines),
        change=change, receipt_ids=receipt_ids, supplier_state=order.supplier_state.value,
        supplier_state_at=step.at if step else None,
        carrier=shipment.carrier if shipment else None, tracking=shipment.tracking if shipment else None,
    )


# --- receipts: posted over HTTP (a command) or published by a warehouse (an event) ---------------


async def receive_goods(uow: UnitOfWork, receipt: GoodsReceived) -> Literal["recorded", "replayed"]:
    """Goods arrived at a warehouse: recorded once, then the allocator serves the backorder book
    with them (GoodsReceived). The same receipt_id with the same content is a replay."""
    outcome = await _record_receipt(uow, receipt, via="http")
    if outcome == "recorded":
        uow.emit(receipt, correlation_id=receipt.receipt_id)
    return outcome


async def on_goods_received(event: GoodsReceived, uow: UnitOfWork) -> None:
    """Receipts a warehouse published to the topic (those posted over HTTP are announced by us,
    and a service does not read its own events)."""
    try:
        await _record_receipt(uow, event, via="topic")
    except UnknownSku as error:
        # The allocator has served the book with this receipt's known lines already; what it
        # decided waits (parked) until the receipt is recorded, so say how to get it recorded.
        raise DeadLetter(
            f"receipt {event.receipt_id}: {error} ({error.field}); register it (PUT /v1/skus/{error.sku}), then "
            "post this receipt unchanged to POST /v1/receipts: its allocations and put-aways wait for it"
        ) from error


async def _record_receipt(
    uow: UnitOfWork, receipt: GoodsReceived, via: Literal["http", "topic"]
) -> Literal["recorded", "replayed"]:
    """Record a receipt once (same id, same content: a replay); its units wait in `pending` for
    the allocator, which serves the backorder book first. The one way in for both sources."""
    pairs = [(line.sku, line.qty) for line in receipt.lines]
    await store.lock_receipt(uow.session, receipt.receipt_id)
    content = receipt_content(receipt.warehouse, receipt.purchase_order_id, pairs)
    if await _known_receipt(uow, receipt.receipt_id, content):
        return "replayed"
    policies = await store.load_policies(uow.session, (sku for sku, _ in pairs))
    for index, (sku, _) in enumerate(pairs):
        if sku not in policies:
            raise UnknownSku(sku, field=f"lines.{index}.sku")
    po_id = receipt.purchase_order_id
    against_po = po_id is not None and await store.load_purchase_order(uow.session, po_id) is not None
    if po_id is not None and not against_po:
        if via == "http":
            raise Invalid("purchase_order_id", f"unknown purchase order {po_id}")
        # On the topic the allocator has read this receipt too and serves the book with it: the
        # goods are in the building, so count them; only the purchase order goes unmatched.
        log.warning("receipt %s names unknown purchase order %s: units counted, none served", receipt.receipt_id, po_id)
    if not await store.insert_receipt(uow.session, receipt, po_id, via):
        await _known_receipt(uow, receipt.receipt_id, content)  # recorded concurrently: a replay or a clash
        return "replayed"
    per_sku = received_per_sku(pairs)
    await store.lock_stock(uow.session, per_sku)
    await store.apply_deltas(uow.session, {sku: receipt_delta(qty) for sku, qty in per_sku.items()})
    if po_id is not None and against_po:
        order = await _lock_purchase_order(uow, po_id)
        lines = receive_against(order.lines, per_sku)
        if lines != order.lines:
            await _save_purchase_order(uow, replace(order, lines=lines), "received", at=receipt.received_at)
    for event_type, payload in await store.unpark(uow.session, store.awaiting_receipt(receipt.receipt_id)):
        if event_type == BackorderAllocated.event_type:
            await on_backorder_allocated(BackorderAllocated.model_validate(payload), uow)
        else:
            await on_goods_put_away(GoodsPutAway.model_validate(payload), uow)
    return "recorded"


async def _known_receipt(uow: UnitOfWork, receipt_id: str, content: ReceiptContent) -> bool:
    recorded = await store.find_receipt(uow.session, receipt_id)
    if recorded is not None and recorded != content:
        raise Conflict(f"duplicate receipt id with different content: receipt {receipt_id} was recorded otherwise")
    return recorded is not None


# --- orders' events -----------------------------------------------------------------------------


async def on_orders_placed(run: Sequence[tuple[Envelope, OrderPlaced]], uow: UnitOfWork) -> None:
    """Reserve what is on hand per line, report the backorderable shortfall, reject the rest: for
    a whole run of placed orders at once, in event order, so an earlier order is served first.

    Statements per run, whatever its size: lock the stock rows with their policies, lock the lines
    already recorded (the same order under another event id, or a tombstone of a line cancelled
    before we saw it: not decided again), apply every SKU's change, number the shortfalls, save
    the lines. An order repeating a line number can never apply: the run is refused, and the
    consumer then applies the batch one event at a time, dead-lettering only that order."""
    requests = [(order.order_id, [RequestedLine(line.line_no, line.sku, line.qty) for line in order.lines]) for _, order in run]
    for order_id, lines in requests:
        if repeats_line_no(lines):
            raise Unapplicable(f"order {order_id} repeats a line number")
    # The rows stay locked until commit, so the rule decides on stock nobody else can take
    # meanwhile: two orders never both get the last unit (see store's docstring).
    levels, policies = await store.lock_stock_with_policies(uow.session, (line.sku for _, lines in requests for line in lines))
    recorded = await store.lock_lines(uow.session, ((order_id, line.line_no) for order_id, lines in requests for line in lines))
    decided = reserve_orders(requests, policies, levels, recorded.keys(), today=datetime.now(UTC).date())
    every = [decision for decisions in decided for decision in decisions]
    if not every:
        return
    await store.apply_deltas(uow.session, reservation_deltas(every))
    first = await store.number_shortfalls(uow.session, Counter(d.sku for d in every if d.short))
    numbers = iter(shortfall_numbers(every, first))
    holdings: dict[LineKey, LineHolding] = {}
    rejections: dict[LineKey, str] = {}
    preorders: list[Preorder] = []
    for (envelope, order), decisions in zip(run, decided, strict=True):
        # A preordered line counts as short for the book: an order that may not ship partially is
        # held, not cross-docked, while it waits for the release.
        short_lines = sum(1 for d in decisions if d.short or d.preordered)
        placed = Placed(order.order_id, order.placed_at, order.customer.tier, order.partial_allowed, short_lines)
        for d in decisions:
            short_seq = next(numbers)
            holdings[(order.order_id, d.line_no)] = LineHolding.decided(d, short_seq)
            if d.rejection:
                rejections[(order.order_id, d.line_no)] = d.rejection.value
            announce_decision(uow, placed, d, short_seq, envelope)
            if d.preordered and d.release_date is not None:
                uow.emit(LinePreordered(order_id=order.order_id, line_no=d.line_no, sku=d.sku, qty=d.preordered,
                                        release_date=d.release_date), cause=envelope)
                preorders.append(Preorder((order.order_id, d.line_no), d.sku, d.preordered, order.placed_at, order.customer.tier,
                                          order.partial_allowed, short_lines, d.release_date))
    await store.save_lines(uow.session, holdings, rejections)
    await store.insert_preorders(uow.session, preorders)


@dataclass(frozen=True)
class Placed:
    """What the announcement of a line's decision needs of its order (StockShort carries it to the book)."""

    order_id: UUID
    ordered_at: datetime
    tier: str
    partial_allowed: bool
    order_short_lines: int


def announce_decision(uow: UnitOfWork, placed: Placed, d: LineDecision, short_seq: int, cause: Envelope | None = None) -> None:
    """Tell what a line got, at placement (caused by OrderPlaced) or on its release day (no cause:
    correlated by the order): rejected, reserved and/or short."""
    correlation = None if cause else str(placed.order_id)
    if d.rejection:
        uow.emit(LineRejected(order_id=placed.order_id, line_no=d.line_no, sku=d.sku, qty=d.qty, reason=d.rejection),
                 correlation_id=correlation, cause=cause)
    if d.reserved:
        uow.emit(StockReserved(order_id=placed.order_id, line_no=d.line_no, sku=d.sku, qty=d.reserved),
                 correlation_id=correlation, cause=cause)
    if d.short:
        uow.emit(
            StockShort(
                order_id=placed.order_id, line_no=d.line_no, sku=d.sku, qty_short=d.short, qty_reserved=d.reserved,
                ordered_at=placed.ordered_at, customer_tier=placed.tier, partial_allowed=placed.partial_allowed,
                order_short_lines=placed.order_short_lines, short_seq=short_seq,
            ),
            correlation_id=correlation, cause=cause,
        )


async def on_line_cancelled(event: LineCancelled, uow: UnitOfWork) -> None:
    """Held units go back to the allocator; a line not seen yet is remembered as cancelled."""
    key = (event.order_id, event.line_no)
    await store.lock_stock(uow.session, [event.sku])
    line = (await store.lock_lines(uow.session, [key])).get(key)
    if line is None:
        await store.save_lines(uow.session, {key: LineHolding(event.sku, cancelled=True)})
        return
    if line.sku != event.sku:
        raise Unapplicable(f"line {event.line_no} of order {event.order_id} is for {line.sku}, not {event.sku}")
    move = cancel_line(line)
    await store.apply_deltas(uow.session, {line.sku: move.stock})
    await store.save_lines(uow.session, {key: move.line})
    await _release(uow, line.sku, move.released, "cancellation")


async def on_shipped(event: Shipped, uow: UnitOfWork) -> None:
    """Units leave the building; each (shipment, line, source) moves its units once. Orders
    checks a warehouse's report against the requested shipment and announces Shipped, and only
    that moves stock, so the two services never disagree about what left. A shipment of units
    still on their way to the line (its BackorderAllocated comes on another topic, and may come
    later) is parked until they arrive, not dead-lettered."""
    sources = [(line.line_no, line.source) for line in event.lines]
    if len(set(sources)) != len(sources):
        raise Unapplicable(f"shipment {event.shipment_id} names a line twice with the same source")
    # Locked before reading what was shipped already: a copy of this shipment applied while we
    # waited (e.g. unparked by an allocation) must be seen, not shipped a second time.
    await store.lock_stock(uow.session, (line.sku for line in event.lines))
    done = await store.shipped_already(uow.session, event.shipment_id)
    todo = [line for line in event.lines if (line.line_no, line.source) not in done]
    if not todo:
        return
    holdings = await store.lock_lines(uow.session, ((event.order_id, line.line_no) for line in todo))
    deltas: dict[str, Buckets] = defaultdict(Buckets)
    moved: dict[LineKey, LineHolding] = {}
    for shipped in todo:
        key = (event.order_id, shipped.line_no)
        line = moved.get(key) or holdings.get(key)
        if line is None or line.sku != shipped.sku:
            raise Unapplicable(f"order {event.order_id} line {shipped.line_no} ({shipped.sku}) holds no units here")
        try:
            move = ship_from_line(line, shipped.qty, shipped.source)
        except NotHeld as error:
            if awaits_allocation(line, shipped.qty):
                log.info("shipment %s waits for units allocated to order %s", event.shipment_id, event.order_id,
                         extra={"order_id": event.order_id})
                await store.park(uow.session, store.awaiting_order(event.order_id), event)
                return
            raise Unapplicable(f"order {event.order_id} line {shipped.line_no}: {error}") from error
        moved[key] = move.line
        deltas[shipped.sku] += move.stock
    await store.apply_deltas(uow.session, deltas)
    await store.save_lines(uow.session, moved)
    await store.insert_shipment_lines(uow.session, event.order_id, event.shipment_id, todo)


# --- the allocator's decisions about pending units ----------------------------------------------


async def on_backorder_allocated(event: BackorderAllocated, uow: UnitOfWork) -> None:
    """Pending units go to a waiting line: to the shipping dock, or held on the shelf."""
    key = (event.order_id, event.line_no)
    if not await _claim_pending(uow, event, key):
        return
    line = (await store.lock_lines(uow.session, [key])).get(key)
    if line is None:
        log.warning("allocation of %d %s to unknown line %s; releasing it", event.qty, event.sku, key)
        await _release(uow, event.sku, event.qty, "unclaimed")
        return
    move = allocate_to_line(line, event.qty, event.cross_dock)
    await store.apply_deltas(uow.session, {event.sku: move.stock})
    await store.save_lines(uow.session, {key: move.line})
    await _release(uow, event.sku, move.released, "cancellation" if line.cancelled else "unclaimed")
    for _, payload in await store.unpark(uow.session, store.awaiting_order(event.order_id)):
        await on_shipped(Shipped.model_validate(payload), uow)  # parks itself again if units are still missing


async def on_goods_put_away(event: GoodsPutAway, uow: UnitOfWork) -> None:
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
    if not await _claim_pending(uow, event, None):
        return
    to_book = min(event.qty, await store.unseen_shortfall_units(uow.session, event.sku, event.shorts_seen))
    await store.apply_deltas(uow.session, {event.sku: put_away_delta(event.qty - to_book)})
    from_dock = event.source_id if event.source == "receipt" else None  # never shelved: they may still cross-dock
    await _release(uow, event.sku, to_book, "backordered meanwhile", receipt_id=from_dock)


async def _claim_pending(uow: UnitOfWork, event: BackorderAllocated | GoodsPutAway, line: LineKey | None) -> bool:
    """Lock the receipt (for a receipt's decision) and the SKU's row; False when the decision must
    wait for its receipt to be recorded (it is parked) or was applied already."""
    if event.source == "receipt":
        await store.lock_receipt(uow.session, event.source_id)
    level = (await store.lock_stock(uow.session, [event.sku])).get(event.sku)
    if event.source == "receipt" and not await store.receipt_recorded(uow.session, event.source_id):
        # The allocator read a receipt from the topic before we did (or we dead-lettered it, e.g.
        # for a SKU not registered yet, which may be this one): apply this when it is recorded.
        await store.park(uow.session, store.awaiting_receipt(event.source_id), event)
        return False
    if level is None:
        raise UnknownSku(event.sku)
    if not await store.first_decision(uow.session, event.source_id, event.sku, line, event.qty):
        log.info("%s of %s from %s already applied", event.event_type, event.sku, event.source_id)
        return False
    if level.pending < event.qty:
        raise Unapplicable(f"{event.sku}: {event.qty} units decided but only {level.pending} pending")
    return True


HANDLERS = Handlers.by_class({
    OrderPlaced: on_orders_placed,
    LineCancelled: each(on_line_cancelled),
    Shipped: each(on_shipped),
    BackorderAllocated: each(on_backorder_allocated),
    GoodsPutAway: each(on_goods_put_away),
    GoodsReceived: each(on_goods_received),
})
