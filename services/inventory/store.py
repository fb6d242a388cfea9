"""All of inventory's SQL for changes: stock rows and line holdings (locked in one global order,
changed set-based), SKU policies, counts, shipments, the allocator's decisions, parked events,
receipts and purchase orders. No emits and no rules here: handlers decide (with domain), this stores.

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
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory.domain.stock import BUCKETS, Buckets, LineHolding, LineKey, Preorder, SkuPolicy
from services.inventory.domain.supply import (
    PurchaseOrder,
    PurchaseOrderLine,
    ReceiptContent,
    SupplierState,
    SupplierStep,
    receipt_content,
)
from shared.events import Event, GoodsReceived, ShipmentLine

POLICY_FIELDS = tuple(SkuPolicy.__dataclass_fields__)
LINE_FIELDS = ("reserved", "cross_docked", "shipped", "waiting", "cancelled", "short_seq", "preordered")

LOCK_STOCK = text(f"SELECT sku, {', '.join(BUCKETS)} FROM stock WHERE sku = ANY(CAST(:skus AS text[])) ORDER BY sku FOR UPDATE")
LOCK_STOCK_WITH_POLICIES = text(
    f"SELECT {', '.join('s.' + b for b in BUCKETS)}, {', '.join('p.' + f for f in POLICY_FIELDS)} "
    "FROM stock s JOIN sku_policy p ON p.sku = s.sku "
    "WHERE s.sku = ANY(CAST(:skus AS text[])) ORDER BY s.sku FOR UPDATE OF s"
)
APPLY_DELTAS = text(
    "UPDATE stock AS s SET "
    + ", ".join(f"{b} = s.{b} + d.{b}" for b in BUCKETS)
    + ", updated_at = now() FROM unnest(CAST(:sku AS text[]), "
    + ", ".join(f"CAST(:{b} AS bigint[])" for b in BUCKETS)
    + f") AS d(sku, {', '.join(BUCKETS)}) WHERE s.sku = d.sku"
)
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
LOCK_LINES = text(
    f"SELECT order_id, line_no, sku, {', '.join(LINE_FIELDS)} FROM line_stock "
    "WHERE (order_id, line_no) IN (SELECT * FROM unnest(CAST(:orders AS uuid[]), CAST(:lines AS int[]))) "
    "ORDER BY order_id, line_no FOR UPDATE"
)
SAVE_LINE = text(
    "INSERT INTO line_stock (order_id, line_no, sku, reserved, cross_docked, shipped, waiting, cancelled, rejection, short_seq, "
    "preordered) VALUES (:order_id, :line_no, :sku, :reserved, :cross_docked, :shipped, :waiting, :cancelled, :rejection, "
    ":short_seq, :preordered) "
    "ON CONFLICT (order_id, line_no) DO UPDATE SET reserved = EXCLUDED.reserved, cross_docked = EXCLUDED.cross_docked, "
    "shipped = EXCLUDED.shipped, waiting = EXCLUDED.waiting, cancelled = EXCLUDED.cancelled, short_seq = EXCLUDED.short_seq, "
    "preordered = EXCLUDED.preordered, updated_at = now()"
)
LOAD_POLICIES = text(f"SELECT {', '.join(POLICY_FIELDS)} FROM sku_policy WHERE sku = ANY(CAST(:skus AS text[]))")
UPSERT_POLICY = text(
    f"INSERT INTO sku_policy ({', '.join(POLICY_FIELDS)}) VALUES ({', '.join(':' + f for f in POLICY_FIELDS)}) "
    "ON CONFLICT (sku) DO UPDATE SET "
    + ", ".join(f"{f} = EXCLUDED.{f}" for f in POLICY_FIELDS if f != "sku")
    + ", updated_at = now() RETURNING (xmax = 0) AS created"
)
CREATE_STOCK = text("INSERT INTO stock (sku) VALUES (:sku) ON CONFLICT (sku) DO NOTHING")
INSERT_ADJUSTMENT = text(
    "INSERT INTO stock_adjustment (sku, delta, reason, release_id) VALUES (:sku, :delta, :reason, :release_id)"
)
INSERT_RELEASE = text("INSERT INTO stock_release (release_id, sku, qty, reason) VALUES (:release_id, :sku, :qty, :reason)")
SHIPPED_ALREADY = text("SELECT line_no, source FROM shipment_line WHERE shipment_id = :id")
INSERT_SHIPMENT_LINE = text(
    "INSERT INTO shipment_line (shipment_id, line_no, order_id, sku, qty, source) "
    "VALUES (:shipment_id, :line_no, :order_id, :sku, :qty, :source)"
)
FIRST_DECISION = text(
    "INSERT INTO applied_decision (source_id, sku, order_id, line_no, qty) VALUES (:source_id, :sku, :order_id, :line_no, :qty) "
    "ON CONFLICT DO NOTHING RETURNING qty"
)
NO_ORDER = UUID(int=0)
PARK = text("INSERT INTO parked_event (awaits, event_type, payload) VALUES (:awaits, :event_type, CAST(:payload AS jsonb))")
UNPARK = text("DELETE FROM parked_event WHERE awaits = :awaits RETURNING id, event_type, payload")
LOCK_RECEIPT = text("SELECT pg_advisory_xact_lock(hashtext(:key))")
RECEIPT_RECORDED = text("SELECT 1 FROM receipt WHERE receipt_id = :receipt_id")
FIND_RECEIPT = text("SELECT warehouse, purchase_order_id, lines FROM receipt WHERE receipt_id = :id")
INSERT_RECEIPT = text(
    "INSERT INTO receipt (receipt_id, warehouse, purchase_order_id, lines, received_at, via) "
    "VALUES (:id, :warehouse, :po, CAST(:lines AS jsonb), :received_at, :via) "
    "ON CONFLICT (receipt_id) DO NOTHING RETURNING receipt_id"
)
LOAD_PURCHASE_ORDER = "SELECT id, supplier, expected_at, cancelled, version, create_request FROM purchase_order WHERE id = :id"
LOAD_PURCHASE_ORDER_LINES = text(
    "SELECT sku, qty_ordered, qty_received FROM purchase_order_line WHERE purchase_order_id = :id ORDER BY sku"
)
INSERT_PURCHASE_ORDER = text(
    "INSERT INTO purchase_order (id, supplier, expected_at, status, cancelled, version, create_request) "
    "VALUES (:id, :supplier, :expected_at, :status, false, :version, CAST(:create_request AS jsonb)) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
UPDATE_PURCHASE_ORDER = text(
    "UPDATE purchase_order SET expected_at = :expected_at, status = :status, cancelled = :cancelled, "
    "version = :version, updated_at = now() WHERE id = :id"
)
UPSERT_PURCHASE_ORDER_LINE = text(
    "INSERT INTO purchase_order_line (purchase_order_id, sku, qty_ordered, qty_received) "
    "VALUES (:id, :sku, :qty_ordered, :qty_received) ON CONFLICT (purchase_order_id, sku) "
    "DO UPDATE SET qty_ordered = EXCLUDED.qty_ordered, qty_received = EXCLUDED.qty_received"
)
RECEIPTS_OF = text("SELECT receipt_id FROM receipt WHERE purchase_order_id = :id ORDER BY receipt_id")
INSERT_PREORDERS = text(
    "INSERT INTO preorder_line (order_id, line_no, sku, qty, ordered_at, tier, partial_allowed, order_short_lines, release_date) "
    "SELECT * FROM unnest(CAST(:order_ids AS uuid[]), CAST(:line_nos AS int[]), CAST(:skus AS text[]), CAST(:qtys AS bigint[]), "
    "CAST(:ordered_ats AS timestamptz[]), CAST(:tiers AS text[]), CAST(:partials AS boolean[]), CAST(:short_lines AS int[]), "
    "CAST(:release_dates AS date[])) ON CONFLICT DO NOTHING"
)
# A SKU's preordered lines still waiting, in the order they were placed: the order of their release.
WAITING_PREORDERS = text(
    "SELECT order_id, line_no, sku, qty, ordered_at, tier, partial_allowed, order_short_lines, release_date FROM preorder_line "
    "WHERE sku = ANY(CAST(:skus AS text[])) AND released_at IS NULL ORDER BY sku, ordered_at, order_id, line_no"
)
RELEASE_DUE = text(
    "SELECT DISTINCT w.sku FROM preorder_line w JOIN sku_policy p ON p.sku = w.sku "
    "WHERE w.released_at IS NULL AND (p.release_date IS NULL OR p.release_date <= :today) ORDER BY w.sku"
)
MARK_RELEASED = text(
    "UPDATE preorder_line SET released_at = now() "
    "WHERE (order_id, line_no) IN (SELECT * FROM unnest(CAST(:orders AS uuid[]), CAST(:lines AS int[])))"
)
RETELL_RELEASE = text("UPDATE preorder_line SET release_date = :release_date WHERE sku = :sku AND released_at IS NULL")
LOAD_SUPPLIER_STEPS = text(
    "SELECT state, at, carrier, tracking FROM purchase_order_supplier_step WHERE purchase_order_id = :id"
)
# A state is reached once: what is recorded stays (a later save writes the whole history again).
INSERT_SUPPLIER_STEP = text(
    "INSERT INTO purchase_order_supplier_step (purchase_order_id, state, at, carrier, tracking, report) "
    "VALUES (:id, :state, :at, :carrier, :tracking, CAST(:report AS jsonb)) ON CONFLICT (purchase_order_id, state) DO NOTHING"
)
SUPPLIER_REPORT = text("SELECT report FROM purchase_order_supplier_step WHERE purchase_order_id = :id AND state = :state")


# --- stock rows ---------------------------------------------------------------------------------


def _buckets(row: Any) -> Buckets:
    return Buckets(**{b: getattr(row, b) for b in BUCKETS})


async def lock_stock(session: AsyncSession, skus: Iterable[str]) -> dict[str, Buckets]:
    """Lock the stock rows of these SKUs in SKU order (see the module docstring) and read them."""
    rows = await session.execute(LOCK_STOCK, {"skus": sorted(set(skus))})
    return {row.sku: _buckets(row) for row in rows}


async def lock_stock_with_policies(session: AsyncSession, skus: Iterable[str]) -> tuple[dict[str, Buckets], dict[str, SkuPolicy]]:
    """lock_stock plus each SKU's policy, in the same round trip (the order hot path). Unknown
    SKUs are absent from both."""
    rows = (await session.execute(LOCK_STOCK_WITH_POLICIES, {"skus": sorted(set(skus))})).all()
    levels = {row.sku: _buckets(row) for row in rows}
    policies = {row.sku: SkuPolicy(**{f: getattr(row, f) for f in POLICY_FIELDS}) for row in rows}
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


# --- what each order line holds -----------------------------------------------------------------


async def lock_lines(session: AsyncSession, keys: Iterable[LineKey]) -> dict[LineKey, LineHolding]:
    """Lock and read the holdings of these order lines (after the stock rows: see the module
    docstring); lines never recorded are absent."""
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    rows = await session.execute(LOCK_LINES, {"orders": [k[0] for k in ordered], "lines": [k[1] for k in ordered]})
    return {(row.order_id, row.line_no): LineHolding(row.sku, *(getattr(row, f) for f in LINE_FIELDS)) for row in rows}


async def save_lines(
    session: AsyncSession, lines: Mapping[LineKey, LineHolding], rejections: Mapping[LineKey, str] | None = None
) -> None:
    """Insert or update these lines' holdings in one executemany (a rejection is set only on insert)."""
    if not lines:
        return
    rejections = rejections or {}
    rows = [
        {"order_id": key[0], "line_no": key[1], "sku": line.sku, "rejection": rejections.get(key),
         **{f: getattr(line, f) for f in LINE_FIELDS}}
        for key, line in lines.items()
    ]
    await session.execute(SAVE_LINE, rows)


# --- SKU policy, counts, releases, shipments ----------------------------------------------------


async def load_policies(session: AsyncSession, skus: Iterable[str]) -> dict[str, SkuPolicy]:
    rows = await session.execute(LOAD_POLICIES, {"skus": sorted(set(skus))})
    return {row.sku: SkuPolicy(**row._mapping) for row in rows}


async def upsert_policy(session: AsyncSession, policy: SkuPolicy) -> bool:
    """Store the SKU's policy and make sure it has a stock row; True when the SKU is new."""
    created = bool((await session.execute(UPSERT_POLICY, {f: getattr(policy, f) for f in POLICY_FIELDS})).scalar_one())
    await session.execute(CREATE_STOCK, {"sku": policy.sku})
    return created


async def insert_adjustment(session: AsyncSession, sku: str, delta: int, reason: str, release_id: UUID | None) -> None:
    await session.execute(INSERT_ADJUSTMENT, {"sku": sku, "delta": delta, "reason": reason, "release_id": release_id})


async def insert_release(session: AsyncSession, release_id: UUID, sku: str, qty: int, reason: str) -> None:
    await session.execute(INSERT_RELEASE, {"release_id": release_id, "sku": sku, "qty": qty, "reason": reason})


async def shipped_already(session: AsyncSession, shipment_id: UUID) -> set[tuple[int, str]]:
    """The (line, source) pairs of this shipment whose units already left."""
    return {(row.line_no, row.source) for row in await session.execute(SHIPPED_ALREADY, {"id": shipment_id})}


async def insert_shipment_lines(session: AsyncSession, order_id: UUID, shipment_id: UUID, lines: Sequence[ShipmentLine]) -> None:
    rows = [
        {"shipment_id": shipment_id, "line_no": s.line_no, "order_id": order_id, "sku": s.sku, "qty": s.qty, "source": s.source}
        for s in lines
    ]
    await session.execute(INSERT_SHIPMENT_LINE, rows)


# --- the allocator's decisions, and events parked until what they need is here ------------------


async def first_decision(session: AsyncSession, source_id: str, sku: str, line: LineKey | None, qty: int) -> bool:
    """Record an allocator decision by its business key; False if it was applied before (the same
    decision under another event id). A put-away has no line: one per arrival and SKU."""
    order_id, line_no = line or (NO_ORDER, 0)
    params = {"source_id": source_id, "sku": sku, "order_id": order_id, "line_no": line_no, "qty": qty}
    return (await session.execute(FIRST_DECISION, params)).first() is not None


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


# --- receipts -----------------------------------------------------------------------------------


async def lock_receipt(session: AsyncSession, receipt_id: str) -> None:
    """Serialise recording a receipt against parking the decisions that wait for it, so a decision
    parked is always seen by the unpark that follows. A row lock cannot do it: until it is
    recorded the receipt has no row, and a SKU it names may have none yet either."""
    await session.execute(LOCK_RECEIPT, {"key": awaiting_receipt(receipt_id)})


async def receipt_recorded(session: AsyncSession, receipt_id: str) -> bool:
    return (await session.execute(RECEIPT_RECORDED, {"receipt_id": receipt_id})).first() is not None


async def find_receipt(session: AsyncSession, receipt_id: str) -> ReceiptContent | None:
    """What the receipt recorded under this id holds; None when none is."""
    row = (await session.execute(FIND_RECEIPT, {"id": receipt_id})).first()
    if row is None:
        return None
    return receipt_content(row.warehouse, row.purchase_order_id, ((sku, qty) for sku, qty in row.lines))


async def insert_receipt(session: AsyncSession, receipt: GoodsReceived, purchase_order_id: str | None, via: str) -> bool:
    """False when a receipt with this id is recorded already (the caller compares contents)."""
    params = {
        "id": receipt.receipt_id, "warehouse": receipt.warehouse, "po": purchase_order_id, "via": via,
        "lines": json.dumps([(line.sku, line.qty) for line in receipt.lines]), "received_at": receipt.received_at,
    }
    return (await session.execute(INSERT_RECEIPT, params)).first() is not None


# --- purchase orders: every change is stored as the next version ----------------------------------


async def load_purchase_order(
    session: AsyncSession, po_id: str, *, lock: bool = False
) -> tuple[PurchaseOrder, dict[str, Any]] | None:
    """The purchase order and the body that created it (to tell a replay from a clash)."""
    row = (await session.execute(text(LOAD_PURCHASE_ORDER + (" FOR UPDATE" if lock else "")), {"id": po_id})).first()
    if row is None:
        return None
    rows = await session.execute(LOAD_PURCHASE_ORDER_LINES, {"id": po_id})
    lines = tuple(PurchaseOrderLine(r.sku, r.qty_ordered, r.qty_received) for r in rows)
    steps = [
        SupplierStep(SupplierState(r.state), r.at, r.carrier, r.tracking)
        for r in await session.execute(LOAD_SUPPLIER_STEPS, {"id": po_id})
    ]
    history = tuple(sorted(steps, key=lambda step: step.state.rank))
    order = PurchaseOrder(
        row.id, row.supplier, row.expected_at, lines, cancelled=row.cancelled, version=row.version, supplier_history=history
    )
    return order, row.create_request


async def _write_purchase_order_lines(session: AsyncSession, order: PurchaseOrder) -> None:
    rows = [
        {"id": order.id, "sku": line.sku, "qty_ordered": line.qty_ordered, "qty_received": line.qty_received}
        for line in order.lines
    ]
    if rows:
        await session.execute(UPSERT_PURCHASE_ORDER_LINE, rows)


async def _write_supplier_history(session: AsyncSession, order: PurchaseOrder, report: Mapping[str, Any] | None) -> None:
    """Record the states reached that are not recorded yet; `report`, the request that reported the
    newest one, is kept with it."""
    newest = order.supplier_step
    rows = [
        {"id": order.id, "state": step.state.value, "at": step.at, "carrier": step.carrier, "tracking": step.tracking,
         "report": json.dumps(report) if report is not None and step is newest else None}
        for step in order.supplier_history
    ]
    if rows:
        await session.execute(INSERT_SUPPLIER_STEP, rows)


async def insert_purchase_order(session: AsyncSession, order: PurchaseOrder, create_request: Mapping[str, Any]) -> bool:
    """False when the id is already taken (the caller compares bodies)."""
    params = {
        "id": order.id, "supplier": order.supplier, "expected_at": order.expected_at, "status": order.status,
        "version": order.version, "create_request": json.dumps(create_request),
    }
    if (await session.execute(INSERT_PURCHASE_ORDER, params)).first() is None:
        return False
    await _write_purchase_order_lines(session, order)
    await _write_supplier_history(session, order, None)
    return True


async def update_purchase_order(session: AsyncSession, order: PurchaseOrder, report: Mapping[str, Any] | None = None) -> None:
    """Store a purchase order loaded with lock=True, as it is now (the caller set its new version);
    `report`: the request that reported its newest supplier state, if one did."""
    params = {
        "id": order.id, "expected_at": order.expected_at, "status": order.status,
        "cancelled": order.cancelled, "version": order.version,
    }
    await session.execute(UPDATE_PURCHASE_ORDER, params)
    await _write_purchase_order_lines(session, order)
    await _write_supplier_history(session, order, report)


async def supplier_report(session: AsyncSession, po_id: str, state: SupplierState) -> dict[str, Any] | None:
    """The request that reported this supplier state of the purchase order, if one did."""
    report: dict[str, Any] | None = (
        await session.execute(SUPPLIER_REPORT, {"id": po_id, "state": state.value})
    ).scalar_one_or_none()
    return report


async def receipts_of(session: AsyncSession, po_id: str) -> tuple[str, ...]:
    return tuple(row.receipt_id for row in await session.execute(RECEIPTS_OF, {"id": po_id}))


# --- preorders ----------------------------------------------------------------------------------


async def insert_preorders(session: AsyncSession, preorders: Sequence[Preorder]) -> None:
    """Queue preordered lines for their release (a line queued before is left as it is)."""
    if preorders:
        await session.execute(INSERT_PREORDERS, {
            "order_ids": [p.key[0] for p in preorders], "line_nos": [p.key[1] for p in preorders],
            "skus": [p.sku for p in preorders], "qtys": [p.qty for p in preorders],
            "ordered_ats": [p.ordered_at for p in preorders], "tiers": [p.tier for p in preorders],
            "partials": [p.partial_allowed for p in preorders], "short_lines": [p.order_short_lines for p in preorders],
            "release_dates": [p.release_date for p in preorders],
        })


async def waiting_preorders(session: AsyncSession, skus: Iterable[str]) -> list[Preorder]:
    """The SKUs' preordered lines not released yet, in release order (lock the stock rows first)."""
    rows = await session.execute(WAITING_PREORDERS, {"skus": sorted(set(skus))})
    return [
        Preorder((row.order_id, row.line_no), row.sku, row.qty, row.ordered_at, row.tier, row.partial_allowed,
                 row.order_short_lines, row.release_date)
        for row in rows
    ]


async def release_due(session: AsyncSession, today: date) -> list[str]:
    """SKUs whose release day has come (or whose release date was taken away) with lines waiting."""
    return list((await session.execute(RELEASE_DUE, {"today": today})).scalars())


async def mark_released(session: AsyncSession, keys: Sequence[LineKey]) -> None:
    if keys:
        await session.execute(MARK_RELEASED, {"orders": [k[0] for k in keys], "lines": [k[1] for k in keys]})


async def retell_release(session: AsyncSession, sku: str, release_date: date) -> None:
    await session.execute(RETELL_RELEASE, {"sku": sku, "release_date": release_date})
