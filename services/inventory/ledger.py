"""Stock rows and line holdings in the database: locked in SKU order, changed set-based.

How "two orders for the last unit never both get it" holds, and why it cannot deadlock:
every writer that changes stock first locks the SKU rows it touches with one
`SELECT ... ORDER BY sku FOR UPDATE` (lock_stock), then the order lines it touches (lock_lines).
Under READ COMMITTED a second transaction blocks on the first one's row lock and, once it
commits, reads the newest committed values, so the pure rule decides on stock nobody else can
change until we commit. Because every transaction takes its locks in the same global order
(stock rows by SKU, then line rows by key), no two of them can wait for each other in a cycle.
The decision is written with one UPDATE for all SKUs (apply_deltas), and the CHECK (>= 0) on
every bucket stays the last line of defence: if a bug ever bypassed the lock, the transaction
would fail instead of selling a unit twice.

The consumer applies a batch of events in one transaction, and the SKUs of one event may sort
before those of the previous one; two instances could then wait for each other across batches.
PostgreSQL detects that, aborts one batch, and the consumer retries its events one by one (each
in its own transaction, locking in order), so it costs a retry, never a wrong count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory.domain import BUCKETS, Buckets, LineHolding, SkuPolicy
from shared.bus.outbox import UnitOfWork
from shared.events import Event, StockReleased

LineKey = tuple[UUID, int]

LOCK_STOCK = text(f"SELECT sku, {', '.join(BUCKETS)} FROM stock WHERE sku = ANY(CAST(:skus AS text[])) ORDER BY sku FOR UPDATE")
LOCK_RECEIPT = text("SELECT pg_advisory_xact_lock(hashtext(:key))")
APPLY_DELTAS = text(
    "UPDATE stock AS s SET "
    + ", ".join(f"{b} = s.{b} + d.{b}" for b in BUCKETS)
    + ", updated_at = now() FROM unnest(CAST(:sku AS text[]), "
    + ", ".join(f"CAST(:{b} AS bigint[])" for b in BUCKETS)
    + f") AS d(sku, {', '.join(BUCKETS)}) WHERE s.sku = d.sku"
)
LOCK_STOCK_WITH_POLICIES = text(
    f"SELECT {', '.join('s.' + b for b in BUCKETS)}, p.sku, p.backorderable, p.discontinued, p.max_backorder_qty, p.supplier, "
    "p.safety_stock, p.case_pack, p.min_order_qty FROM stock s JOIN sku_policy p ON p.sku = s.sku "
    "WHERE s.sku = ANY(CAST(:skus AS text[])) ORDER BY s.sku FOR UPDATE OF s"
)
LOAD_POLICIES = text(
    "SELECT sku, backorderable, discontinued, max_backorder_qty, supplier, safety_stock, case_pack, min_order_qty "
    "FROM sku_policy WHERE sku = ANY(CAST(:skus AS text[]))"
)
LOCK_LINES = text(
    "SELECT order_id, line_no, sku, reserved, cross_docked, shipped, waiting, cancelled, short_seq FROM line_stock "
    "WHERE (order_id, line_no) IN (SELECT * FROM unnest(CAST(:orders AS uuid[]), CAST(:lines AS int[]))) "
    "ORDER BY order_id, line_no FOR UPDATE"
)
SAVE_LINE = text(
    "INSERT INTO line_stock (order_id, line_no, sku, reserved, cross_docked, shipped, waiting, cancelled, rejection, short_seq) "
    "VALUES (:order_id, :line_no, :sku, :reserved, :cross_docked, :shipped, :waiting, :cancelled, :rejection, :short_seq) "
    "ON CONFLICT (order_id, line_no) DO UPDATE SET reserved = EXCLUDED.reserved, cross_docked = EXCLUDED.cross_docked, "
    "shipped = EXCLUDED.shipped, waiting = EXCLUDED.waiting, cancelled = EXCLUDED.cancelled, updated_at = now()"
)
INSERT_RELEASE = text("INSERT INTO stock_release (release_id, sku, qty, reason) VALUES (:release_id, :sku, :qty, :reason)")
FIRST_DECISION = text(
    "INSERT INTO applied_decision (source_id, sku, order_id, line_no, qty) VALUES (:source_id, :sku, :order_id, :line_no, :qty) "
    "ON CONFLICT DO NOTHING RETURNING qty"
)
NO_ORDER = UUID(int=0)
RECEIPT_RECORDED = text("SELECT 1 FROM receipt WHERE receipt_id = :receipt_id")
PARK = text("INSERT INTO parked_event (awaits, event_type, payload) VALUES (:awaits, :event_type, CAST(:payload AS jsonb))")
UNPARK = text("DELETE FROM parked_event WHERE awaits = :awaits RETURNING id, event_type, payload")
NUMBER_SHORTFALLS = text(
    "UPDATE stock AS s SET short_seq = s.short_seq + d.n FROM unnest(CAST(:skus AS text[]), CAST(:counts AS int[])) "
    "AS d(sku, n) WHERE s.sku = d.sku RETURNING s.sku, s.short_seq"
)
# Units still waiting on lines numbered after the allocator's last booked shortfall: the allocator
# did not know them when it decided to put units on the shelf.
UNSEEN_SHORTFALLS = text(
    "SELECT coalesce(sum(waiting), 0) FROM line_stock "
    "WHERE sku = :sku AND waiting > 0 AND NOT cancelled AND short_seq > :seen"
)


async def lock_stock(session: AsyncSession, skus: Iterable[str]) -> dict[str, Buckets]:
    """Lock the stock rows of these SKUs in SKU order (see the module docstring) and read them."""
    rows = await session.execute(LOCK_STOCK, {"skus": sorted(set(skus))})
    return {row.sku: Buckets(**{b: getattr(row, b) for b in BUCKETS}) for row in rows}


async def lock_stock_with_policies(session: AsyncSession, skus: Iterable[str]) -> tuple[dict[str, Buckets], dict[str, SkuPolicy]]:
    """lock_stock plus each SKU's policy, in the same round trip (the order hot path)."""
    rows = (await session.execute(LOCK_STOCK_WITH_POLICIES, {"skus": sorted(set(skus))})).all()
    levels = {row.sku: Buckets(**{b: getattr(row, b) for b in BUCKETS}) for row in rows}
    policy_fields = SkuPolicy.__dataclass_fields__
    policies = {row.sku: SkuPolicy(**{k: v for k, v in row._mapping.items() if k in policy_fields}) for row in rows}
    return levels, policies


async def apply_deltas(session: AsyncSession, deltas: Mapping[str, Buckets]) -> None:
    """Change every SKU's stock row in one statement; the rows must be locked by lock_stock."""
    changed = {sku: delta for sku, delta in deltas.items() if not delta.is_zero}
    if not changed:
        return
    params: dict[str, list[object]] = {"sku": list(changed)}
    for bucket in BUCKETS:
        params[bucket] = [getattr(delta, bucket) for delta in changed.values()]
    await session.execute(APPLY_DELTAS, params)


async def load_policies(session: AsyncSession, skus: Iterable[str]) -> dict[str, SkuPolicy]:
    rows = await session.execute(LOAD_POLICIES, {"skus": sorted(set(skus))})
    return {row.sku: SkuPolicy(**row._mapping) for row in rows}


async def lock_lines(session: AsyncSession, keys: Iterable[LineKey]) -> dict[LineKey, LineHolding]:
    """Lock and read the holdings of these order lines (after the stock rows: see the module docstring)."""
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    rows = await session.execute(LOCK_LINES, {"orders": [k[0] for k in ordered], "lines": [k[1] for k in ordered]})
    return {
        (row.order_id, row.line_no): LineHolding(
            sku=row.sku, reserved=row.reserved, cross_docked=row.cross_docked, shipped=row.shipped,
            waiting=row.waiting, cancelled=row.cancelled, short_seq=row.short_seq,
        )
        for row in rows
    }


async def save_lines(
    session: AsyncSession, lines: Mapping[LineKey, LineHolding], rejections: Mapping[LineKey, str] | None = None
) -> None:
    if not lines:
        return
    rejections = rejections or {}
    rows = [
        {
            "order_id": key[0], "line_no": key[1], "sku": line.sku, "reserved": line.reserved,
            "cross_docked": line.cross_docked, "shipped": line.shipped, "waiting": line.waiting,
            "cancelled": line.cancelled, "rejection": rejections.get(key), "short_seq": line.short_seq,
        }
        for key, line in lines.items()
    ]
    await session.execute(SAVE_LINE, rows)


async def release(uow: UnitOfWork, sku: str, qty: int, reason: str, receipt_id: str | None = None) -> UUID | None:
    """Announce units put back in `pending` (the caller's delta did that) so the allocator serves
    the backorder book with them first and puts the rest away. `receipt_id`: the units are that
    receipt's, still at the dock, so they may go straight to shipping."""
    if qty <= 0:
        return None
    release_id = uuid4()
    await uow.session.execute(INSERT_RELEASE, {"release_id": release_id, "sku": sku, "qty": qty, "reason": reason})
    uow.emit(StockReleased(release_id=release_id, sku=sku, qty=qty, reason=reason, receipt_id=receipt_id))
    return release_id


async def first_decision(session: AsyncSession, source_id: str, sku: str, line: LineKey | None, qty: int) -> bool:
    """Record an allocator decision by its business key; False if it was applied before (the same
    decision under another event id). A put-away has no line: one per arrival and SKU."""
    order_id, line_no = line or (NO_ORDER, 0)
    params = {"source_id": source_id, "sku": sku, "order_id": order_id, "line_no": line_no, "qty": qty}
    return (await session.execute(FIRST_DECISION, params)).first() is not None


async def lock_receipt(session: AsyncSession, receipt_id: str) -> None:
    """Serialise recording a receipt against parking the decisions that wait for it, so a decision
    parked is always seen by the unpark that follows. A row lock cannot do it: until it is
    recorded the receipt has no row, and a SKU it names may have none yet either."""
    await session.execute(LOCK_RECEIPT, {"key": awaiting_receipt(receipt_id)})


async def receipt_recorded(session: AsyncSession, receipt_id: str) -> bool:
    return (await session.execute(RECEIPT_RECORDED, {"receipt_id": receipt_id})).first() is not None


def awaiting_receipt(receipt_id: str) -> str:
    return f"receipt:{receipt_id}"


def awaiting_order(order_id: UUID) -> str:
    return f"order:{order_id}"


async def park(session: AsyncSession, awaits: str, event: Event) -> None:
    """Keep an event that arrived before what it needs (`awaits`); unpark applies it later."""
    payload = json.dumps(event.model_dump(mode="json"))
    await session.execute(PARK, {"awaits": awaits, "event_type": event.event_type, "payload": payload})


async def unpark(session: AsyncSession, awaits: str) -> list[tuple[str, dict[str, object]]]:
    """Take the events parked for this, in the order they arrived."""
    rows = (await session.execute(UNPARK, {"awaits": awaits})).all()
    return [(row.event_type, row.payload) for row in sorted(rows, key=lambda row: row.id)]


async def number_shortfalls(session: AsyncSession, shorts_per_sku: Mapping[str, int]) -> dict[str, int]:
    """Take the next shortfall numbers of each SKU (rows locked by lock_stock); returns the first
    number per SKU. Numbers follow the SKU's lock order, which is also its StockShort order."""
    counts = {sku: n for sku, n in sorted(shorts_per_sku.items()) if n > 0}
    if not counts:
        return {}
    rows = await session.execute(NUMBER_SHORTFALLS, {"skus": list(counts), "counts": list(counts.values())})
    return {row.sku: row.short_seq - counts[row.sku] + 1 for row in rows}


async def unseen_shortfall_units(session: AsyncSession, sku: str, shorts_seen: int) -> int:
    """Units waiting, now, on shortfalls the allocator had not booked when it decided a put-away
    (the SKU's row is locked, so no shortfall is numbered meanwhile)."""
    return int((await session.execute(UNSEEN_SHORTFALLS, {"sku": sku, "seen": shorts_seen})).scalar_one())
