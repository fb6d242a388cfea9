"""Everything that changes the backorder book, and the only place the allocator emits: one function
per command (the priority policies) and per consumed event. Each locks the SKUs' books through
`store`, loads what it needs, lets `domain` decide, saves and emits.

Events come in runs (consecutive events of one class in a consumer batch). Short lines, receipts,
releases and orders placed are applied set-based: the run's SKUs are locked once, its lines booked
or served in a few statements and each SKU re-dated once. Cancellations and purchase-order
changes, rare, are applied one at a time."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime

from services.allocator import store
from services.allocator.domain.dates import DateMove, EtaReason, date_moves
from services.allocator.domain.queue import (
    Arrival,
    LineKey,
    PriorityPolicy,
    SupplyConflict,
    cross_dock_in_turn,
    first_arrivals,
    policy_in_force,
    queue_may_move_between,
    serve_in_turn,
    supply_per_sku,
)
from shared import metrics
from shared.bus.handlers import DeadLetter, Handlers, each
from shared.bus.outbox import UnitOfWork
from shared.events import (
    BackorderAllocated,
    BackorderBooked,
    Envelope,
    EtaChanged,
    GoodsPutAway,
    GoodsReceived,
    LineCancelled,
    OrderPlaced,
    PurchaseOrderChanged,
    StockReleased,
    StockShort,
)


class NotFound(LookupError):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


# --- commands (HTTP) ----------------------------------------------------------------------------


async def set_global_policy(uow: UnitOfWork, policy: PriorityPolicy) -> int:
    """The default for every SKU without its own policy; returns how many lines were re-dated."""
    previous = await store.lock_global_policy(uow.session)
    await store.save_policy(uow.session, "global", policy, _now())
    if policy_in_force(None, previous) is policy:
        return 0
    skus = await store.skus_on_global_policy(uow.session)
    # lock_book reads the policy after the upsert above: the new one.
    policies = await store.lock_book(uow.session, skus)
    return announce(uow, await redate(uow, policies, EtaReason.PRIORITY_CHANGED))


async def set_sku_policy(uow: UnitOfWork, sku: str, policy: PriorityPolicy) -> int:
    """A SKU's own policy, overriding the global one; returns how many lines were re-dated."""
    before = await store.lock_book(uow.session, [sku])
    await store.save_policy(uow.session, sku, policy, _now())
    if before[sku] is policy:
        return 0
    return announce(uow, await redate(uow, {sku: policy}, EtaReason.PRIORITY_CHANGED))


async def delete_sku_policy(uow: UnitOfWork, sku: str) -> int:
    """The SKU follows the global policy again; its lines are re-dated if that changes their order."""
    before = await store.lock_book(uow.session, [sku])
    if not await store.delete_policy(uow.session, sku):
        raise NotFound(f"SKU {sku} has no policy of its own")
    after = await store.policies_of(uow.session, [sku])
    if before[sku] is after[sku]:
        return 0
    return announce(uow, await redate(uow, after, EtaReason.PRIORITY_CHANGED))


# --- events -------------------------------------------------------------------------------------


async def on_stock_short(run: Sequence[tuple[Envelope, StockShort]], uow: UnitOfWork) -> None:
    """Short lines enter the book, each once (a duplicate, or a line already cancelled, is
    ignored), and each line booked now is announced with its promised date, or none yet."""
    for _, event in run:
        if event.line_no < 1 or event.order_short_lines < 1 or event.ordered_at.tzinfo is None:
            line = f"{event.order_id}/{event.line_no}"
            raise DeadLetter(f"StockShort {line}: line_no >= 1, order_short_lines >= 1 and a tz-aware ordered_at are required")
    policies = await store.lock_book(uow.session, (event.sku for _, event in run))
    shared = queue_may_move_between(([event.sku] for _, event in run), policies)
    if shared and await store.datable(uow.session, shared):
        for item in run:
            await _book_together(uow, [item], policies)
    else:
        await _book_together(uow, run, policies)


async def _book_together(
    uow: UnitOfWork, run: Sequence[tuple[Envelope, StockShort]], policies: Mapping[str, PriorityPolicy]
) -> None:
    """Book the lines in one statement and re-date each SKU that took a line once."""
    booked = await store.book_lines(uow.session, [event for _, event in run], _now())
    entering: dict[LineKey, tuple[Envelope, StockShort]] = {}
    for envelope, event in run:
        if (event.order_id, event.line_no) in booked:
            entering.setdefault((event.order_id, event.line_no), (envelope, event))
    if not entering:
        return
    causes = {event.sku: envelope for envelope, event in entering.values()}  # the last booking of each SKU
    moves = await redate(uow, {sku: policies[sku] for sku in causes}, EtaReason.QUEUE_MOVED, entering.keys())
    dates = {move.key: move.new for move in moves if move.reason is EtaReason.BOOKED}
    for key, (envelope, event) in entering.items():
        booking = BackorderBooked(
            order_id=event.order_id, line_no=event.line_no, sku=event.sku, qty_waiting=event.qty_short,
            promised_date=dates.get(key),
        )
        uow.emit(booking, cause=envelope)
    announce(uow, moves, causes)


async def on_line_cancelled(event: LineCancelled, uow: UnitOfWork) -> None:
    """The line leaves the book at once and the lines behind it move up."""
    policies = await store.lock_book(uow.session, [event.sku])
    if await store.cancel_line(uow.session, event.order_id, event.line_no, event.sku, _now()):
        announce(uow, await redate(uow, policies, EtaReason.QUEUE_MOVED))


async def on_goods_received(run: Sequence[tuple[Envelope, GoodsReceived]], uow: UnitOfWork) -> None:
    """Received goods serve the book first and go straight to shipping where the order can ship."""
    arrivals = []
    for envelope, event in run:
        units = supply_per_sku((line.sku, line.qty) for line in event.lines)
        arrivals.append((envelope, Arrival("receipt", event.receipt_id, event.receipt_id, units, event.purchase_order_id)))
    await _serve(uow, arrivals)


async def on_stock_released(run: Sequence[tuple[Envelope, StockReleased]], uow: UnitOfWork) -> None:
    """Units handed back serve the book first too: as a pick, or, when they are a receipt's still
    at the dock (put away before their lines were booked), as a cross-dock where the order can ship."""
    await _serve(uow, [(envelope, Arrival("release", str(event.release_id), event.receipt_id, {event.sku: event.qty}))
                      for envelope, event in run])


async def on_purchase_order_changed(event: PurchaseOrderChanged, uow: UnitOfWork) -> None:
    """Inbound supply moved: store the newest version and re-date the SKUs it concerns."""
    try:
        units = supply_per_sku((line.sku, line.qty_open) for line in event.lines)
    except ValueError as error:
        raise DeadLetter(f"purchase order {event.purchase_order_id} v{event.version}: {error}") from error
    known = await store.purchase_order_versions(uow.session, event.purchase_order_id)
    if known and max(known.values()) >= event.version:
        return  # a stale or repeated copy: a newer state is already applied
    policies = await store.lock_book(uow.session, [*units, *known])
    await store.save_purchase_order(
        uow.session, event.purchase_order_id, event.version, event.status, event.expected_at, units, event.receipt_ids,
        event.supplier_state,
    )
    reason = EtaReason.PURCHASE_ORDER_CANCELLED if event.status == "cancelled" else EtaReason.PURCHASE_ORDER_CHANGED
    announce(uow, await redate(uow, policies, reason))


async def on_order_placed(run: Sequence[tuple[Envelope, OrderPlaced]], uow: UnitOfWork) -> None:
    """Counts lines ordered per SKU, the denominator of the backorder rate: one statement a run."""
    await store.count_lines_ordered(uow.session, supply_per_sku((line.sku, 1) for _, event in run for line in event.lines))


# --- serving arrivals and re-dating, shared by the handlers above -------------------------------


async def _serve(uow: UnitOfWork, arrivals: Sequence[tuple[Envelope, Arrival]]) -> None:
    """Lock every SKU of the run's arrivals once (in SKU order), pass over supply already served
    (by its business key, whatever the event id), and serve the rest together; one at a time only
    where re-dating between two arrivals could reorder a queue they share."""
    policies = await store.lock_book(uow.session, (sku for _, arrival in arrivals for sku in arrival.units))
    applied = await store.supply_applied(uow.session, ((arrival.source, arrival.source_id) for _, arrival in arrivals))
    try:
        fresh = first_arrivals(arrivals, applied)
    except SupplyConflict as error:
        raise DeadLetter(str(error)) from error
    shared = queue_may_move_between((arrival.units for _, arrival in fresh), policies)
    if shared and await store.datable(uow.session, shared):
        for item in fresh:
            await _serve_together(uow, [item], policies)
    elif fresh:
        await _serve_together(uow, fresh, policies)


async def _serve_together(
    uow: UnitOfWork, arrivals: Sequence[tuple[Envelope, Arrival]], policies: Mapping[str, PriorityPolicy]
) -> None:
    """Read each SKU's queue head once for the arrivals' total supply, serve the arrivals in turn in
    the domain (each cross-docking, across its SKUs, on the orders as the ones before left them),
    write the fills and the supply in one statement each, emit, and re-date each SKU once."""
    session = uow.session
    run = [arrival for _, arrival in arrivals]
    supply = supply_per_sku((sku, qty) for arrival in run for sku, qty in arrival.units.items())
    served = serve_in_turn(run, await store.queue_heads(session, supply, policies), policies)
    at_dock = {order_id for arrival, result in zip(run, served, strict=True) if arrival.at_dock for order_id in result.orders}
    crossed = cross_dock_in_turn(run, served, await store.order_progress_of(session, at_dock) if at_dock else {})
    now = _now()
    # Observed before the commit: a transaction rolled back and applied again (a deadlock between
    # instances, a lost database) observes its fills twice, a rare and small overcount.
    for seconds in await store.fill_lines(session, run, served, crossed, now):
        metrics.TIME_TO_FILL.observe(seconds)
    await store.record_supply(session, run, served, now)
    shelved = {sku for result in served for sku, qty in result.put_away.items() if qty > 0}
    seen = await store.shorts_seen(session, shelved) if shelved else {}
    for (envelope, arrival), result, flags in zip(arrivals, served, crossed, strict=True):
        for item, cross_dock in zip(result.allocations, flags, strict=True):
            allocation = item.allocation
            allocated = BackorderAllocated(
                order_id=allocation.order_id, line_no=allocation.line_no, sku=item.sku, qty=allocation.qty,
                source=arrival.source, source_id=arrival.source_id, receipt_id=arrival.receipt_id, cross_dock=cross_dock,
            )
            uow.emit(allocated, cause=envelope)
        for sku, qty in result.put_away.items():
            if qty > 0:
                put_away = GoodsPutAway(sku=sku, qty=qty, source=arrival.source, source_id=arrival.source_id,
                                        shorts_seen=seen.get(sku, 0))
                uow.emit(put_away, cause=envelope)
    causes = {sku: envelope for envelope, arrival in arrivals for sku in arrival.units}  # the last arrival of each SKU
    announce(uow, await redate(uow, {sku: policies[sku] for sku in supply}, EtaReason.QUEUE_MOVED), causes)


async def redate(
    uow: UnitOfWork, policies: Mapping[str, PriorityPolicy], reason: EtaReason, entering: Collection[LineKey] = ()
) -> list[DateMove]:
    """Project the promised date of every waiting line of the (locked) SKUs from their inbound
    supply and store the dates that moved; returns the moves, for `announce`."""
    if not policies:
        return []
    book, inbound = await store.datable_books(uow.session, sorted(policies))
    moves = date_moves(book, inbound, policies, reason, entering)
    await store.save_promised_dates(uow.session, moves)
    return moves


def announce(uow: UnitOfWork, moves: Sequence[DateMove], causes: Mapping[str, Envelope] | None = None) -> int:
    """EtaChanged for every line whose date moved, except lines entering the book (their
    BackorderBooked carries the date); `causes`: the event that moved each SKU's dates, when a run
    of events is applied at once. Returns the lines re-dated."""
    for move in moves:
        if move.reason is not EtaReason.BOOKED:
            changed = EtaChanged(order_id=move.key[0], line_no=move.key[1], sku=move.sku, previous_date=move.previous,
                                 new_date=move.new, reason=move.reason.value)
            uow.emit(changed, cause=causes.get(move.sku) if causes else None)
    return len(moves)


HANDLERS = Handlers.by_class({
    StockShort: on_stock_short,
    LineCancelled: each(on_line_cancelled),
    GoodsReceived: on_goods_received,
    StockReleased: on_stock_released,
    PurchaseOrderChanged: each(on_purchase_order_changed),
    OrderPlaced: on_order_placed,
})
