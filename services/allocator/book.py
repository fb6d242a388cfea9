"""The backorder book in PostgreSQL: the per-SKU lock, set-based reads and writes, and re-dating.

Every statement here touches a whole SKU (or a set of SKUs) at once: the hot paths never make a
round trip per waiting line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.allocator.domain import (
    Allocation,
    EtaReason,
    InboundSupply,
    LineKey,
    OrderProgress,
    PriorityPolicy,
    WaitingLine,
    eta_changes,
    eta_reasons,
    order_progress,
    policy_in_force,
    project_promised_dates,
    queue_order,
)
from shared.bus.outbox import UnitOfWork
from shared.events import BackorderBooked, EtaChanged

INSERT_MISSING_SKUS = text(
    "INSERT INTO book_sku (sku) SELECT s FROM unnest(CAST(:skus AS text[])) AS s ORDER BY s ON CONFLICT (sku) DO NOTHING"
)
LOCK_SKUS = text("SELECT sku FROM book_sku WHERE sku = ANY(CAST(:skus AS text[])) ORDER BY sku FOR UPDATE")
# Read by its own statement once the SKUs are locked: joined into the locking statement, a policy
# changed while that statement waited for the lock would be read as it was before the wait.
SELECT_POLICIES = text(
    """
    SELECT u.sku, s.policy AS own_policy, g.policy AS global_policy
    FROM unnest(CAST(:skus AS text[])) AS u(sku)
    LEFT JOIN priority_policy s ON s.scope = u.sku
    LEFT JOIN priority_policy g ON g.scope = 'global'
    """
)
SELECT_WAITING = text(
    """
    SELECT sku, order_id, line_no, qty_waiting, ordered_at, tier, first_promised_date, promised_date
    FROM waiting_line WHERE sku = ANY(CAST(:skus AS text[])) AND status = 'waiting'
    """
)
# The head of each SKU's queue that an arrival can reach: the book in the policy's order (the same
# keys as domain.queue_order: vip first for "tier", dated lines by first promised date for
# "due_date", then order time, order id, line) with a running sum, cut where the units ahead of a
# line already use up the supply. The domain still decides; it just gets ~supply lines, not the
# whole book. complete_lines_first may fill any line that fits, so it gets the whole book.
SELECT_QUEUE_HEADS = text(
    """
    SELECT q.sku, q.order_id, q.line_no, q.qty_waiting, q.ordered_at, q.tier, q.first_promised_date
    FROM unnest(CAST(:skus AS text[]), CAST(:supplies AS int[]), CAST(:policies AS text[])) AS s(sku, supply, policy)
    CROSS JOIN LATERAL (
        SELECT w.sku, w.order_id, w.line_no, w.qty_waiting, w.ordered_at, w.tier, w.first_promised_date,
               sum(w.qty_waiting) OVER (
                   ORDER BY CASE WHEN s.policy = 'tier' THEN w.tier <> 'vip' END,
                            CASE WHEN s.policy = 'due_date' THEN w.first_promised_date IS NULL END,
                            CASE WHEN s.policy = 'due_date' THEN w.first_promised_date END,
                            w.ordered_at, w.order_id, w.line_no
                   ROWS UNBOUNDED PRECEDING
               ) - w.qty_waiting AS units_ahead
        FROM waiting_line AS w
        WHERE w.sku = s.sku AND w.status = 'waiting'
    ) AS q
    WHERE q.units_ahead < s.supply OR s.policy = 'complete_lines_first'
    """
)
# Open supply as the newest purchase-order copy states it, less the receipts against it that this
# book has already served but that copy does not name yet (receipts and purchase-order changes
# travel on different topics, in either order): a received unit is never promised twice.
SELECT_INBOUND = text(
    """
    SELECT * FROM (
        SELECT i.sku, i.purchase_order_id, i.expected_at,
               i.qty_open - coalesce((
                   SELECT sum(a.qty) FROM supply_applied a
                   WHERE a.purchase_order_id = i.purchase_order_id AND a.sku = i.sku AND a.source = 'receipt'
                     AND NOT (a.source_id = ANY(i.receipt_ids))
               ), 0) AS qty_open
        FROM inbound_supply i
        WHERE i.sku = ANY(CAST(:skus AS text[])) AND i.status = 'open' AND i.qty_open > 0
    ) AS open_supply
    WHERE qty_open > 0
    """
)
# A SKU with no open supply and no dated line has nothing to re-date: every line is undated and stays so.
SELECT_DATABLE = text(
    """
    SELECT s FROM unnest(CAST(:skus AS text[])) AS s
    WHERE EXISTS (SELECT 1 FROM inbound_supply i WHERE i.sku = s AND i.status = 'open' AND i.qty_open > 0)
       OR EXISTS (SELECT 1 FROM waiting_line w WHERE w.sku = s AND w.status = 'waiting' AND w.promised_date IS NOT NULL)
    """
)
UPDATE_PROMISED = text(
    """
    UPDATE waiting_line AS w
    SET promised_date = u.promised, first_promised_date = coalesce(w.first_promised_date, u.promised)
    FROM unnest(CAST(:order_ids AS uuid[]), CAST(:line_nos AS int[]), CAST(:dates AS date[])) AS u(order_id, line_no, promised)
    WHERE w.order_id = u.order_id AND w.line_no = u.line_no
    """
)
SELECT_ORDER_PROGRESS = text(
    """
    SELECT order_id,
           coalesce(bool_and(partial_allowed) FILTER (WHERE booked_at IS NOT NULL), false) AS partial_allowed,
           coalesce(sum(qty_waiting) FILTER (WHERE status = 'waiting'), 0) AS units_waiting,
           coalesce(max(order_short_lines) FILTER (WHERE booked_at IS NOT NULL), 0) AS order_short_lines,
           count(*) FILTER (WHERE booked_at IS NOT NULL) AS lines_booked
    FROM waiting_line WHERE order_id = ANY(CAST(:order_ids AS uuid[])) GROUP BY order_id
    """
)
# Takes the allocated units off the waiting lines and records who got what, in one round trip
# (the allocations' arrays are sent once): both writes run whatever the count says, and a count
# short of the allocations makes fill_lines raise, which rolls both back.
FILL_LINES = text(
    """
    WITH u AS MATERIALIZED (
        SELECT * FROM unnest(CAST(:order_ids AS uuid[]), CAST(:line_nos AS int[]), CAST(:skus AS text[]),
                             CAST(:qtys AS int[]), CAST(:cross_docks AS boolean[])) AS u(order_id, line_no, sku, qty, cross_dock)
    ), filled AS (
        UPDATE waiting_line AS w
        SET qty_waiting = w.qty_waiting - u.qty,
            qty_allocated = w.qty_allocated + u.qty,
            status = CASE WHEN w.qty_waiting = u.qty THEN 'filled' ELSE 'waiting' END,
            filled_at = CASE WHEN w.qty_waiting = u.qty THEN CAST(:now AS timestamptz) END
        FROM u
        WHERE w.order_id = u.order_id AND w.line_no = u.line_no AND w.status = 'waiting' AND w.qty_waiting >= u.qty
          AND w.order_id = ANY(CAST(:order_ids AS uuid[]))  -- implied, but it lets the planner look the lines up by key
        RETURNING 1
    ), recorded AS (
        INSERT INTO allocation (order_id, line_no, sku, qty, cross_dock, source, source_id, allocated_at)
        SELECT u.order_id, u.line_no, u.sku, u.qty, u.cross_dock, :source, :source_id, :now FROM u
    )
    SELECT count(*) FROM filled
    """
)
SELECT_SUPPLY_APPLIED = text("SELECT sku, qty FROM supply_applied WHERE source = :source AND source_id = :source_id")
INSERT_SUPPLY_APPLIED = text(
    """
    INSERT INTO supply_applied (source, source_id, sku, qty, put_away, applied_at, purchase_order_id)
    SELECT :source, :source_id, u.sku, u.qty, u.put_away, :now, :purchase_order_id
    FROM unnest(CAST(:skus AS text[]), CAST(:qtys AS int[]), CAST(:put_aways AS int[])) AS u(sku, qty, put_away)
    """
)


@dataclass(frozen=True)
class Arrival:
    """Units arriving for the book: a receipt, or a release (from the shelf: a pick; or units of
    `receipt_id` still at the dock). Units at the dock may cross-dock."""

    source: Literal["receipt", "release"]
    source_id: str
    receipt_id: str | None
    units: Mapping[str, int]
    purchase_order_id: str | None = None


@dataclass(frozen=True)
class SkuAllocation:
    """An allocation of the domain, with the SKU it was made in (a receipt may carry several)."""

    sku: str
    allocation: Allocation


async def lock_book(session: AsyncSession, skus: Iterable[str]) -> dict[str, PriorityPolicy]:
    """Lock the SKUs' books for this transaction and return the priority policy in force for each.

    Per-SKU serialisation: every writer of a SKU's book (StockShort, LineCancelled, a receipt, a
    release, a purchase-order change, a policy change) first takes the row lock of that SKU in
    book_sku, here. Several allocator instances share the consumer group, and receipts are keyed by
    receipt id, not SKU, so two instances can hold receipts for the same SKU at the same moment;
    the row lock makes the second wait until the first has committed, and it then reads the book
    as the first left it (READ COMMITTED takes a new snapshot per statement), so no unit is given
    twice and no waiting line is skipped. Rows are locked in SKU order, in one statement, so two
    events never wait for each other in a cycle. A consumer transaction may hold several events,
    though, and two instances' transactions can then lock in crossing orders: PostgreSQL aborts
    one (deadlock detected, after deadlock_timeout), and the consumer applies that batch again one
    event per transaction, so it costs time, never a unit. Missing rows are inserted first: a row
    that does not exist cannot be locked. The policies are read after the lock is held, so a policy
    change committed while we waited is the one applied.
    """
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    await session.execute(INSERT_MISSING_SKUS, {"skus": wanted})
    await session.execute(LOCK_SKUS, {"skus": wanted})
    rows = (await session.execute(SELECT_POLICIES, {"skus": wanted})).all()
    return {row.sku: policy_in_force(row.own_policy, row.global_policy) for row in rows}


SEE_SHORT = text("UPDATE book_sku SET shorts_seen = greatest(shorts_seen, :seq) WHERE sku = :sku")
SELECT_SHORTS_SEEN = text("SELECT sku, shorts_seen FROM book_sku WHERE sku = ANY(CAST(:skus AS text[]))")


async def see_short(session: AsyncSession, sku: str, short_seq: int) -> None:
    """Remember the newest shortfall of the SKU the book has taken in (the row is locked)."""
    await session.execute(SEE_SHORT, {"sku": sku, "seq": short_seq})


async def shorts_seen(session: AsyncSession, skus: Iterable[str]) -> dict[str, int]:
    """What each put-away tells inventory: the newest shortfall the book had taken in."""
    rows = await session.execute(SELECT_SHORTS_SEEN, {"skus": sorted(set(skus))})
    return {row.sku: row.shorts_seen for row in rows}


async def waiting_lines(session: AsyncSession, skus: Sequence[str]) -> dict[str, dict[WaitingLine, date | None]]:
    """The waiting lines of each SKU (one query for all), with the date each was last promised."""
    book: dict[str, dict[WaitingLine, date | None]] = defaultdict(dict)
    # One fetch and unpacking by position: per-row fetches and named-row lookups were most of a
    # re-date, which reads the whole book of every SKU an arrival touched.
    rows = (await session.execute(SELECT_WAITING, {"skus": list(skus)})).all()
    for sku, order_id, line_no, qty_waiting, ordered_at, tier, first_promised, promised in rows:
        book[sku][WaitingLine(order_id, line_no, sku, qty_waiting, ordered_at, tier, first_promised)] = promised
    return book


async def queue_heads(
    session: AsyncSession, supply: Mapping[str, int], policies: Mapping[str, PriorityPolicy]
) -> dict[str, list[WaitingLine]]:
    """The waiting lines of each SKU that its supply can reach under its policy (one query for all
    SKUs): allocating from these gives the same result as allocating from the whole book."""
    skus = sorted(supply)
    params = {"skus": skus, "supplies": [supply[sku] for sku in skus], "policies": [policies[sku].value for sku in skus]}
    heads: dict[str, list[WaitingLine]] = defaultdict(list)
    rows = (await session.execute(SELECT_QUEUE_HEADS, params)).all()  # one fetch, not one per row
    for sku, order_id, line_no, qty, ordered_at, tier, first_promised in rows:
        heads[sku].append(WaitingLine(order_id, line_no, sku, qty, ordered_at, tier, first_promised))
    return heads


async def inbound_supply(session: AsyncSession, skus: Sequence[str]) -> dict[str, list[InboundSupply]]:
    supply: dict[str, list[InboundSupply]] = defaultdict(list)
    for row in await session.execute(SELECT_INBOUND, {"skus": list(skus)}):
        supply[row.sku].append(InboundSupply(row.purchase_order_id, row.qty_open, row.expected_at))
    return supply


async def redate(
    uow: UnitOfWork, policies: Mapping[str, PriorityPolicy], reason: EtaReason, booking: BackorderBooked | None = None
) -> int:
    """Project the promised date of every waiting line of the (locked) SKUs from their inbound
    supply, store the dates that moved and emit EtaChanged for exactly those lines. A line just
    booked (`booking`) is announced once as BackorderBooked with its date, or None when no
    purchase order covers it yet, whether or not a date moved."""
    session = uow.session
    if not policies:
        return 0
    entering = {(booking.order_id, booking.line_no)} if booking else set()
    booked_date: date | None = None
    skus = list((await session.execute(SELECT_DATABLE, {"skus": sorted(policies)})).scalars())
    moved: list[tuple[str, LineKey, date | None, date | None, EtaReason]] = []
    if skus:
        book = await waiting_lines(session, skus)
        supply = await inbound_supply(session, skus)
        for sku in sorted(skus):
            previous = {line.key: promised for line, promised in book[sku].items()}
            current = project_promised_dates(queue_order(book[sku], policies[sku]), supply[sku])
            for key in entering & current.keys():
                booked_date = current[key]
            for change, why in eta_reasons(eta_changes(previous, current), reason, entering):
                moved.append((sku, change.key, change.previous, change.new, why))
    if moved:
        await session.execute(
            UPDATE_PROMISED,
            {
                "order_ids": [key[0] for _, key, _, _, _ in moved],
                "line_nos": [key[1] for _, key, _, _, _ in moved],
                "dates": [new for _, _, _, new, _ in moved],
            },
        )
    if booking:
        uow.emit(booking.model_copy(update={"promised_date": booked_date}))
    for sku, (order_id, line_no), old, new, why in moved:
        if why is not EtaReason.BOOKED:
            uow.emit(EtaChanged(order_id=order_id, line_no=line_no, sku=sku, previous_date=old, new_date=new, reason=why.value))
    return len(moved)


async def order_progress_of(session: AsyncSession, order_ids: Iterable[UUID]) -> dict[UUID, OrderProgress]:
    """What the cross-dock rule needs about each order, over all its lines and SKUs, in one query."""
    rows = (await session.execute(SELECT_ORDER_PROGRESS, {"order_ids": sorted(set(order_ids))})).all()
    # Unpacked by position: a named Row's attribute lookups were most of this, one order per allocated line.
    return {
        order_id: order_progress(partial_allowed, int(units_waiting), order_short_lines, lines_booked)
        for order_id, partial_allowed, units_waiting, order_short_lines, lines_booked in rows
    }


async def supply_already_applied(session: AsyncSession, source: str, source_id: str) -> dict[str, int]:
    """Units per SKU of a receipt or release already served (empty when it is new)."""
    rows = await session.execute(SELECT_SUPPLY_APPLIED, {"source": source, "source_id": source_id})
    return {row.sku: row.qty for row in rows}


async def record_supply(session: AsyncSession, arrival: Arrival, put_away: Mapping[str, int], now: datetime) -> None:
    skus = sorted(arrival.units)
    await session.execute(
        INSERT_SUPPLY_APPLIED,
        {
            "source": arrival.source,
            "source_id": arrival.source_id,
            "purchase_order_id": arrival.purchase_order_id,
            "now": now,
            "skus": skus,
            "qtys": [arrival.units[sku] for sku in skus],
            "put_aways": [put_away.get(sku, 0) for sku in skus],
        },
    )


async def fill_lines(
    session: AsyncSession,
    allocations: Sequence[SkuAllocation],
    cross_docked: Mapping[LineKey, bool],
    source: str,
    source_id: str,
    now: datetime,
) -> None:
    """Take the allocated units off the waiting lines and record who got what: one statement."""
    if not allocations:
        return
    params = {
        "order_ids": [a.allocation.order_id for a in allocations],
        "line_nos": [a.allocation.line_no for a in allocations],
        "skus": [a.sku for a in allocations],
        "qtys": [a.allocation.qty for a in allocations],
        "cross_docks": [cross_docked[a.allocation.key] for a in allocations],
        "source": source,
        "source_id": source_id,
        "now": now,
    }
    filled = (await session.execute(FILL_LINES, params)).scalar_one()
    if filled != len(allocations):
        # Only possible if the book changed under the lock: refuse rather than over-allocate.
        raise RuntimeError(f"{source} {source_id}: {filled} of {len(allocations)} waiting lines could take their allocation")
