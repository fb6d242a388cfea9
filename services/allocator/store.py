"""All of the allocator's SQL for changes: the per-SKU lock, the book's lines (booked, cancelled,
filled), the queue heads, promised dates, inbound supply, supply served and the priority policies.
Each statement covers a whole run of events (a set of SKUs, lines or arrivals): the hot paths never
make a round trip per waiting line. No emits and no rules here: handlers decide (with domain),
this stores and returns what it read or changed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.allocator.domain.dates import DateMove, InboundSupply
from services.allocator.domain.queue import (
    Arrival,
    LineKey,
    OrderProgress,
    PriorityPolicy,
    Served,
    WaitingLine,
    order_progress,
    policy_in_force,
)
from shared.events import StockShort

# --- the per-SKU lock and the policies --------------------------------------------------------

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
LOCK_GLOBAL_POLICY = text("SELECT policy FROM priority_policy WHERE scope = 'global' FOR UPDATE")
UPSERT_POLICY = text(
    """
    INSERT INTO priority_policy (scope, policy, updated_at) VALUES (:scope, :policy, :now)
    ON CONFLICT (scope) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at
    """
)
DELETE_POLICY = text("DELETE FROM priority_policy WHERE scope = :scope AND scope <> 'global' RETURNING policy")
# SKUs whose lines follow the global policy: waiting lines and no policy of their own.
SKUS_ON_GLOBAL_POLICY = text(
    """
    SELECT DISTINCT w.sku FROM waiting_line w
    WHERE w.status = 'waiting' AND NOT EXISTS (SELECT 1 FROM priority_policy p WHERE p.scope = w.sku)
    """
)


async def lock_book(session: AsyncSession, skus: Iterable[str]) -> dict[str, PriorityPolicy]:
    """Lock the SKUs' books for this transaction and return the priority policy in force for each.

    Per-SKU serialisation: every writer of a SKU's book (StockShort, LineCancelled, a receipt, a
    release, a purchase-order change, a policy change) first takes the row lock of that SKU in
    book_sku, here. Several allocator instances share the consumer group, and receipts are keyed by
    receipt id, not SKU, so two instances can hold receipts for the same SKU at the same moment;
    the row lock makes the second wait until the first has committed, and it then reads the book
    as the first left it (READ COMMITTED takes a new snapshot per statement), so no unit is given
    twice and no waiting line is skipped. Rows are locked in SKU order, in one statement, so two
    runs of events never wait for each other in a cycle. A consumer transaction may hold several
    runs, though, and two instances' transactions can then lock in crossing orders: PostgreSQL
    aborts one (deadlock detected, after deadlock_timeout), and the consumer applies that batch
    again one event per transaction, so it costs time, never a unit. Missing rows are inserted
    first: a row that does not exist cannot be locked. The policies are read after the lock is
    held, so a policy change committed while we waited is the one applied.
    """
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    await session.execute(INSERT_MISSING_SKUS, {"skus": wanted})
    await session.execute(LOCK_SKUS, {"skus": wanted})
    return await policies_of(session, wanted)


async def policies_of(session: AsyncSession, skus: Sequence[str]) -> dict[str, PriorityPolicy]:
    rows = (await session.execute(SELECT_POLICIES, {"skus": list(skus)})).all()
    return {row.sku: policy_in_force(row.own_policy, row.global_policy) for row in rows}


async def lock_global_policy(session: AsyncSession) -> str | None:
    """The global policy row, locked (None before one was ever set)."""
    return (await session.execute(LOCK_GLOBAL_POLICY)).scalar_one_or_none()


async def save_policy(session: AsyncSession, scope: str, policy: PriorityPolicy, now: datetime) -> None:
    await session.execute(UPSERT_POLICY, {"scope": scope, "policy": policy.value, "now": now})


async def delete_policy(session: AsyncSession, sku: str) -> bool:
    """False when the SKU had no policy of its own."""
    return (await session.execute(DELETE_POLICY, {"scope": sku})).first() is not None


async def skus_on_global_policy(session: AsyncSession) -> list[str]:
    return list((await session.execute(SKUS_ON_GLOBAL_POLICY)).scalars())


# --- lines entering and leaving the book ------------------------------------------------------

# A run's short lines in one statement: each line once (a duplicate, or a line whose tombstone is
# there, conflicts and is skipped); each SKU's counter of lines backordered and the newest
# shortfall the book has taken in (StockShort.short_seq) move in the same statement.
BOOK_LINES = text(
    """
    WITH booked AS (
        INSERT INTO waiting_line (order_id, line_no, sku, qty_short, qty_waiting, qty_allocated, ordered_at, tier,
                                  partial_allowed, order_short_lines, status, booked_at)
        SELECT u.order_id, u.line_no, u.sku, u.qty, u.qty, 0, u.ordered_at, u.tier, u.partial_allowed, u.short_lines,
               'waiting', :now
        FROM unnest(CAST(:order_ids AS uuid[]), CAST(:line_nos AS int[]), CAST(:skus AS text[]), CAST(:qtys AS int[]),
                    CAST(:ordered_ats AS timestamptz[]), CAST(:tiers AS text[]), CAST(:partials AS boolean[]),
                    CAST(:short_lines AS int[])) AS u(order_id, line_no, sku, qty, ordered_at, tier, partial_allowed, short_lines)
        ON CONFLICT (order_id, line_no) DO NOTHING
        RETURNING order_id, line_no, sku
    ), counted AS (
        UPDATE book_sku AS b
        SET lines_backordered = b.lines_backordered + coalesce(c.lines, 0), shorts_seen = greatest(b.shorts_seen, s.seq)
        FROM unnest(CAST(:seen_skus AS text[]), CAST(:seen_seqs AS bigint[])) AS s(sku, seq)
        LEFT JOIN (SELECT sku, count(*) AS lines FROM booked GROUP BY sku) AS c ON c.sku = s.sku
        WHERE b.sku = s.sku
    )
    SELECT order_id, line_no FROM booked
    """
)
CANCEL_LINE = text(
    """
    UPDATE waiting_line SET status = 'cancelled', qty_waiting = 0, cancelled_at = :now
    WHERE order_id = :order_id AND line_no = :line_no AND sku = :sku AND status = 'waiting'
    RETURNING line_no
    """
)
# Cancelled before its StockShort arrived: the tombstone makes that StockShort a no-op.
INSERT_TOMBSTONE = text(
    """
    INSERT INTO waiting_line (order_id, line_no, sku, qty_short, qty_waiting, qty_allocated, ordered_at, tier,
                              partial_allowed, order_short_lines, status, cancelled_at)
    VALUES (:order_id, :line_no, :sku, 0, 0, 0, :now, 'standard', false, 0, 'cancelled', :now)
    ON CONFLICT (order_id, line_no) DO NOTHING
    """
)
COUNT_LINES_ORDERED = text(
    """
    INSERT INTO book_sku (sku, lines_ordered)
    SELECT u.sku, u.lines FROM unnest(CAST(:skus AS text[]), CAST(:lines AS int[])) AS u(sku, lines) ORDER BY u.sku
    ON CONFLICT (sku) DO UPDATE SET lines_ordered = book_sku.lines_ordered + excluded.lines_ordered
    """
)


async def book_lines(session: AsyncSession, shorts: Sequence[StockShort], now: datetime) -> set[LineKey]:
    """Book the short lines (each line once: the first of duplicates) and note each SKU's newest
    short_seq (the SKUs are locked); returns the lines booked now."""
    first: dict[LineKey, StockShort] = {}
    for short in shorts:
        first.setdefault((short.order_id, short.line_no), short)
    lines = list(first.values())
    seen: dict[str, int] = defaultdict(int)
    for short in shorts:
        seen[short.sku] = max(seen[short.sku], short.short_seq)
    params = {
        "order_ids": [s.order_id for s in lines], "line_nos": [s.line_no for s in lines], "skus": [s.sku for s in lines],
        "qtys": [s.qty_short for s in lines], "ordered_ats": [s.ordered_at for s in lines],
        "tiers": [s.customer_tier for s in lines], "partials": [s.partial_allowed for s in lines],
        "short_lines": [s.order_short_lines for s in lines], "seen_skus": list(seen), "seen_seqs": list(seen.values()),
        "now": now,
    }
    return {(row[0], row[1]) for row in await session.execute(BOOK_LINES, params)}


async def cancel_line(session: AsyncSession, order_id: UUID, line_no: int, sku: str, now: datetime) -> bool:
    """Take a waiting line out of the book; a line not waiting (not booked yet, or already gone)
    gets a tombstone instead, and False."""
    params = {"order_id": order_id, "line_no": line_no, "sku": sku, "now": now}
    if (await session.execute(CANCEL_LINE, params)).first() is not None:
        return True
    await session.execute(INSERT_TOMBSTONE, params)
    return False


async def count_lines_ordered(session: AsyncSession, lines: Mapping[str, int]) -> None:
    """Add lines ordered per SKU, the denominator of the backorder rate (rows locked in SKU order)."""
    await session.execute(COUNT_LINES_ORDERED, {"skus": list(lines), "lines": list(lines.values())})


# --- serving arrivals -------------------------------------------------------------------------

# The head of each SKU's queue that a run of arrivals can reach (their total supply), in serving
# order: the book in the policy's order (the same keys as domain.queue.queue_order: vip first for "tier",
# dated lines by first promised date for "due_date", then order time, order id, line) with a
# running sum, cut where the units ahead of a line already use up the supply (domain.queue.queue_head's
# cut). The domain still decides; it just gets ~supply lines, not the whole book. complete_lines_first
# may fill any line that fits, so it gets the whole book. Python and SQL are held together by a
# property test for every policy (tests/integration/allocator/test_allocator_queue_order.py).
SELECT_QUEUE_HEADS = text(
    """
    SELECT q.sku, q.order_id, q.line_no, q.qty_waiting, q.ordered_at, q.tier, q.first_promised_date
    FROM unnest(CAST(:skus AS text[]), CAST(:supplies AS int[]), CAST(:policies AS text[])) AS s(sku, supply, policy)
    CROSS JOIN LATERAL (
        SELECT w.sku, w.order_id, w.line_no, w.qty_waiting, w.ordered_at, w.tier, w.first_promised_date,
               row_number() OVER queue AS position,
               sum(w.qty_waiting) OVER (queue ROWS UNBOUNDED PRECEDING) - w.qty_waiting AS units_ahead
        FROM waiting_line AS w
        WHERE w.sku = s.sku AND w.status = 'waiting'
        WINDOW queue AS (
            ORDER BY CASE WHEN s.policy = 'tier' THEN w.tier <> 'vip' END,
                     CASE WHEN s.policy = 'due_date' THEN w.first_promised_date IS NULL END,
                     CASE WHEN s.policy = 'due_date' THEN w.first_promised_date END,
                     w.ordered_at, w.order_id, w.line_no
        )
    ) AS q
    WHERE q.units_ahead < s.supply OR s.policy = 'complete_lines_first'
    ORDER BY q.sku, q.position
    """
)
SELECT_SUPPLY_APPLIED = text(
    """
    SELECT a.source, a.source_id, a.sku, a.qty
    FROM unnest(CAST(:sources AS text[]), CAST(:source_ids AS text[])) AS u(source, source_id)
    JOIN supply_applied AS a ON a.source = u.source AND a.source_id = u.source_id
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
# Takes the allocated units off the waiting lines and records who got what from which arrival, in
# one round trip (the allocations' arrays are sent once). A line served by several arrivals of the
# run is updated once, by their sum. Both writes run whatever the count says, and a count short of
# the lines makes fill_lines raise, which rolls both back. Lines filled now also give their time to
# fill (booked to filled), read from the rows as updated.
FILL_LINES = text(
    """
    WITH u AS MATERIALIZED (
        SELECT * FROM unnest(CAST(:order_ids AS uuid[]), CAST(:line_nos AS int[]), CAST(:skus AS text[]),
                             CAST(:qtys AS int[]), CAST(:cross_docks AS boolean[]), CAST(:sources AS text[]),
                             CAST(:source_ids AS text[])) AS u(order_id, line_no, sku, qty, cross_dock, source, source_id)
    ), per_line AS (
        SELECT order_id, line_no, CAST(sum(qty) AS int) AS qty FROM u GROUP BY order_id, line_no
    ), filled AS (
        UPDATE waiting_line AS w
        SET qty_waiting = w.qty_waiting - p.qty,
            qty_allocated = w.qty_allocated + p.qty,
            status = CASE WHEN w.qty_waiting = p.qty THEN 'filled' ELSE 'waiting' END,
            filled_at = CASE WHEN w.qty_waiting = p.qty THEN CAST(:now AS timestamptz) END
        FROM per_line AS p
        WHERE w.order_id = p.order_id AND w.line_no = p.line_no AND w.status = 'waiting' AND w.qty_waiting >= p.qty
          AND w.order_id = ANY(CAST(:order_ids AS uuid[]))  -- implied, but it lets the planner look the lines up by key
        RETURNING CASE WHEN w.status = 'filled' THEN extract(epoch FROM w.filled_at - w.booked_at) END AS fill_seconds
    ), recorded AS (
        INSERT INTO allocation (order_id, line_no, sku, qty, cross_dock, source, source_id, allocated_at)
        SELECT u.order_id, u.line_no, u.sku, u.qty, u.cross_dock, u.source, u.source_id, :now FROM u
    )
    SELECT count(*), array_agg(fill_seconds) FILTER (WHERE fill_seconds IS NOT NULL) FROM filled
    """
)
INSERT_SUPPLY_APPLIED = text(
    """
    INSERT INTO supply_applied (source, source_id, sku, qty, put_away, applied_at, purchase_order_id)
    SELECT u.source, u.source_id, u.sku, u.qty, u.put_away, :now, u.purchase_order_id
    FROM unnest(CAST(:sources AS text[]), CAST(:source_ids AS text[]), CAST(:skus AS text[]), CAST(:qtys AS int[]),
                CAST(:put_aways AS int[]), CAST(:purchase_order_ids AS text[]))
         AS u(source, source_id, sku, qty, put_away, purchase_order_id)
    """
)
SELECT_SHORTS_SEEN = text("SELECT sku, shorts_seen FROM book_sku WHERE sku = ANY(CAST(:skus AS text[]))")


async def queue_heads(
    session: AsyncSession, supply: Mapping[str, int], policies: Mapping[str, PriorityPolicy]
) -> dict[str, list[WaitingLine]]:
    """The waiting lines of each SKU that its supply can reach under its policy, in serving order
    (one query for all SKUs): allocating from these gives the same result as from the whole book."""
    skus = sorted(supply)
    params = {"skus": skus, "supplies": [supply[sku] for sku in skus], "policies": [policies[sku].value for sku in skus]}
    heads: dict[str, list[WaitingLine]] = defaultdict(list)
    rows = (await session.execute(SELECT_QUEUE_HEADS, params)).all()  # one fetch, unpacked by position
    for sku, order_id, line_no, qty, ordered_at, tier, first_promised in rows:
        heads[sku].append(WaitingLine(order_id, line_no, sku, qty, ordered_at, tier, first_promised))
    return heads


async def supply_applied(session: AsyncSession, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, int]]:
    """Units per SKU of each (source, source_id) already served; absent when it is new."""
    wanted = sorted(set(keys))
    params = {"sources": [source for source, _ in wanted], "source_ids": [source_id for _, source_id in wanted]}
    applied: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for source, source_id, sku, qty in await session.execute(SELECT_SUPPLY_APPLIED, params):
        applied[(source, source_id)][sku] = qty
    return applied


async def order_progress_of(session: AsyncSession, order_ids: Iterable[UUID]) -> dict[UUID, OrderProgress]:
    """What the cross-dock rule needs about each order, over all its lines and SKUs, in one query."""
    rows = (await session.execute(SELECT_ORDER_PROGRESS, {"order_ids": sorted(set(order_ids))})).all()
    # Unpacked by position: a named Row's attribute lookups were most of this, one order per allocated line.
    return {
        order_id: order_progress(partial_allowed, int(units_waiting), order_short_lines, lines_booked)
        for order_id, partial_allowed, units_waiting, order_short_lines, lines_booked in rows
    }


async def fill_lines(
    session: AsyncSession, arrivals: Sequence[Arrival], served: Sequence[Served], cross_docked: Sequence[Sequence[bool]],
    now: datetime,
) -> list[float]:
    """Take what each arrival allocated off the waiting lines and record who got what from which
    arrival (cross-docked or not): one statement for a run of arrivals. Returns the seconds each
    line filled now (fully allocated) waited since its booking."""
    fills = [
        (arrival, item, crossed)
        for arrival, result, flags in zip(arrivals, served, cross_docked, strict=True)
        for item, crossed in zip(result.allocations, flags, strict=True)
    ]
    if not fills:
        return []
    params = {
        "order_ids": [item.allocation.order_id for _, item, _ in fills],
        "line_nos": [item.allocation.line_no for _, item, _ in fills],
        "skus": [item.sku for _, item, _ in fills],
        "qtys": [item.allocation.qty for _, item, _ in fills],
        "cross_docks": [crossed for _, _, crossed in fills],
        "sources": [arrival.source for arrival, _, _ in fills],
        "source_ids": [arrival.source_id for arrival, _, _ in fills],
        "now": now,
    }
    filled, fill_seconds = (await session.execute(FILL_LINES, params)).one()
    lines = len({item.allocation.key for _, item, _ in fills})
    if filled != lines:
        # Only possible if the book changed under the lock: refuse rather than over-allocate.
        raise RuntimeError(f"{filled} of {lines} waiting lines could take their allocation")
    return [float(seconds) for seconds in fill_seconds or ()]


async def record_supply(session: AsyncSession, arrivals: Sequence[Arrival], served: Sequence[Served], now: datetime) -> None:
    """Each arrival's units and put-away per SKU: the business key that makes supply idempotent."""
    rows = [
        (arrival, sku, qty, result.put_away.get(sku, 0))
        for arrival, result in zip(arrivals, served, strict=True)
        for sku, qty in arrival.units.items()
    ]
    params = {
        "sources": [arrival.source for arrival, _, _, _ in rows],
        "source_ids": [arrival.source_id for arrival, _, _, _ in rows],
        "skus": [sku for _, sku, _, _ in rows],
        "qtys": [qty for _, _, qty, _ in rows],
        "put_aways": [shelved for _, _, _, shelved in rows],
        "purchase_order_ids": [arrival.purchase_order_id for arrival, _, _, _ in rows],
        "now": now,
    }
    await session.execute(INSERT_SUPPLY_APPLIED, params)


async def shorts_seen(session: AsyncSession, skus: Iterable[str]) -> dict[str, int]:
    """What each put-away tells inventory: the newest shortfall the book had taken in."""
    rows = await session.execute(SELECT_SHORTS_SEEN, {"skus": sorted(set(skus))})
    return {row.sku: row.shorts_seen for row in rows}


# --- promised dates and inbound supply --------------------------------------------------------

# The waiting lines of the SKUs that have something to date, with the date each was last promised.
# A SKU with no open supply and no dated line has nothing to re-date (every line is undated and
# stays so): its book is not read at all.
SELECT_DATABLE_BOOK = text(
    """
    SELECT w.sku, w.order_id, w.line_no, w.qty_waiting, w.ordered_at, w.tier, w.first_promised_date, w.promised_date
    FROM unnest(CAST(:skus AS text[])) AS s(sku)
    JOIN waiting_line AS w ON w.sku = s.sku AND w.status = 'waiting'
    WHERE EXISTS (SELECT 1 FROM inbound_supply i WHERE i.sku = s.sku AND i.status = 'open' AND i.qty_open > 0)
       OR EXISTS (SELECT 1 FROM waiting_line d WHERE d.sku = s.sku AND d.status = 'waiting' AND d.promised_date IS NOT NULL)
    """
)
SELECT_DATABLE = text(
    """
    SELECT s FROM unnest(CAST(:skus AS text[])) AS s
    WHERE EXISTS (SELECT 1 FROM inbound_supply i WHERE i.sku = s AND i.status = 'open' AND i.qty_open > 0)
       OR EXISTS (SELECT 1 FROM waiting_line w WHERE w.sku = s AND w.status = 'waiting' AND w.promised_date IS NOT NULL)
    """
)
# Open supply as the newest purchase-order copy states it, less the receipts against it that this
# book has already served but that copy does not name yet (receipts and purchase-order changes
# travel on different topics, in either order): a received unit is never promised twice.
SELECT_INBOUND = text(
    """
    SELECT * FROM (
        SELECT i.sku, i.purchase_order_id, i.expected_at, i.supplier_state,
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
UPDATE_PROMISED = text(
    """
    UPDATE waiting_line AS w
    SET promised_date = u.promised, first_promised_date = coalesce(w.first_promised_date, u.promised)
    FROM unnest(CAST(:order_ids AS uuid[]), CAST(:line_nos AS int[]), CAST(:dates AS date[])) AS u(order_id, line_no, promised)
    WHERE w.order_id = u.order_id AND w.line_no = u.line_no
    """
)
LOCK_PURCHASE_ORDER = text("SELECT sku, version FROM inbound_supply WHERE purchase_order_id = :po FOR UPDATE")
UPSERT_PURCHASE_ORDER = text(
    """
    INSERT INTO inbound_supply (purchase_order_id, sku, qty_open, expected_at, version, status, receipt_ids, supplier_state)
    SELECT :po, u.sku, u.qty, :expected_at, :version, :status, CAST(:receipt_ids AS text[]), :supplier_state
    FROM unnest(CAST(:skus AS text[]), CAST(:qtys AS int[])) AS u(sku, qty)
    ON CONFLICT (purchase_order_id, sku) DO UPDATE
    SET qty_open = excluded.qty_open, expected_at = excluded.expected_at, version = excluded.version,
        status = excluded.status, receipt_ids = excluded.receipt_ids, supplier_state = excluded.supplier_state
    WHERE inbound_supply.version < excluded.version
    """
)
# A SKU dropped from the purchase order keeps its row at zero, so the version is not forgotten.
CLOSE_DROPPED_SKUS = text(
    """
    UPDATE inbound_supply SET qty_open = 0, expected_at = :expected_at, version = :version, status = :status,
        receipt_ids = CAST(:receipt_ids AS text[]), supplier_state = :supplier_state
    WHERE purchase_order_id = :po AND version < :version AND NOT (sku = ANY(CAST(:skus AS text[])))
    """
)


async def datable_books(
    session: AsyncSession, skus: Sequence[str]
) -> tuple[dict[str, dict[WaitingLine, date | None]], dict[str, list[InboundSupply]]]:
    """The waiting lines (with the date each was last promised) and the open inbound supply of the
    SKUs that have something to date: one query, and a second only when there is."""
    book: dict[str, dict[WaitingLine, date | None]] = defaultdict(dict)
    # One fetch and unpacking by position: per-row fetches and named-row lookups were most of a
    # re-date, which reads the whole book of every SKU an arrival touched.
    rows = (await session.execute(SELECT_DATABLE_BOOK, {"skus": list(skus)})).all()
    for sku, order_id, line_no, qty_waiting, ordered_at, tier, first_promised, promised in rows:
        book[sku][WaitingLine(order_id, line_no, sku, qty_waiting, ordered_at, tier, first_promised)] = promised
    return book, await open_supply(session, book) if book else {}


async def open_supply(session: AsyncSession, skus: Iterable[str]) -> dict[str, list[InboundSupply]]:
    """Per SKU, the units still to come on open purchase orders (a unit received is not counted)."""
    supply: dict[str, list[InboundSupply]] = defaultdict(list)
    for row in await session.execute(SELECT_INBOUND, {"skus": sorted(skus)}):
        supply[row.sku].append(InboundSupply(row.purchase_order_id, row.qty_open, row.expected_at, row.supplier_state))
    return supply


async def datable(session: AsyncSession, skus: Iterable[str]) -> set[str]:
    """The SKUs with open inbound supply or a dated waiting line: those whose dates can move."""
    return set((await session.execute(SELECT_DATABLE, {"skus": sorted(set(skus))})).scalars())


async def save_promised_dates(session: AsyncSession, moves: Sequence[DateMove]) -> None:
    if moves:
        params = {
            "order_ids": [move.key[0] for move in moves],
            "line_nos": [move.key[1] for move in moves],
            "dates": [move.new for move in moves],
        }
        await session.execute(UPDATE_PROMISED, params)


async def purchase_order_versions(session: AsyncSession, purchase_order_id: str) -> dict[str, int]:
    """The version stored per SKU of the purchase order, its rows locked (empty when it is new)."""
    return {row.sku: row.version for row in await session.execute(LOCK_PURCHASE_ORDER, {"po": purchase_order_id})}


async def save_purchase_order(
    session: AsyncSession, purchase_order_id: str, version: int, status: str, expected_at: date,
    units: Mapping[str, int], receipt_ids: Sequence[str], supplier_state: str = "open",
) -> None:
    """Store this version of the purchase order where it is newer than what is stored."""
    params = {
        "po": purchase_order_id, "expected_at": expected_at, "version": version, "status": status,
        "skus": list(units), "receipt_ids": list(receipt_ids), "supplier_state": supplier_state,
    }
    await session.execute(UPSERT_PURCHASE_ORDER, {**params, "qtys": list(units.values())})
    await session.execute(CLOSE_DROPPED_SKUS, params)
