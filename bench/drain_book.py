"""The database side of the drain benchmark: seed the allocator's book, time the one-statement
anchor on a copy of it, check the allocator's end state, and remove the run's rows."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from bench.drain_bus import Receipt

# Set-based seeding (setup, not measured): line i goes to SKU i mod n; its hash gives a quantity
# of 1..3, a tier (10% vip), partial shipment allowed for two lines in three, and an order time
# spread over about eight days. md5 of the run tag makes the order ids unique per run.
SEED_LINES = """
    INSERT INTO waiting_line (order_id, line_no, sku, qty_short, qty_waiting, qty_allocated, ordered_at, tier,
                              partial_allowed, order_short_lines, status, booked_at)
    SELECT md5($1 || ':' || g.i)::uuid, 1, ($2::text[])[g.i % cardinality($2::text[]) + 1], h.q, h.q, 0,
           $4::timestamptz - make_interval(secs => h.age), CASE WHEN h.v % 10 = 0 THEN 'vip' ELSE 'standard' END,
           h.v % 3 <> 0, 1, 'waiting', $4::timestamptz
    FROM generate_series(0, $3::int - 1) AS g(i)
    CROSS JOIN LATERAL (
        SELECT 1 + (r.x % 3)::int AS q, (r.x / 3) % 1000 AS v, ((r.x / 3000) % 2592000)::double precision AS age
        FROM (SELECT abs(hashtext($1 || '/' || g.i)::bigint) AS x) AS r
    ) AS h
"""
SEED_SKUS = """
    INSERT INTO book_sku (sku, lines_ordered, lines_backordered)
    SELECT sku, count(*), count(*) FROM waiting_line WHERE sku = ANY($1::text[]) GROUP BY sku
    ON CONFLICT (sku) DO UPDATE SET lines_ordered = book_sku.lines_ordered + excluded.lines_ordered,
                                    lines_backordered = book_sku.lines_backordered + excluded.lines_backordered
"""
# The anchor matches FIFO (the allocator's default): pin it per SKU so a global policy changed by
# someone else (a test on a shared stack) cannot change what is measured.
SEED_POLICIES = """
    INSERT INTO priority_policy (scope, policy, updated_at) SELECT s, 'fifo', now() FROM unnest($1::text[]) AS s
    ON CONFLICT (scope) DO UPDATE SET policy = 'fifo', updated_at = now()
"""
VACUUMED = ("waiting_line", "book_sku", "allocation", "supply_applied", "priority_policy", "outbox", "inbox")
SELECT_SEEDED = """
    SELECT order_id, line_no, sku, qty_waiting, ordered_at FROM waiting_line
    WHERE sku = ANY($1::text[]) AND status = 'waiting'
"""
# One statement doing the whole drain: per SKU, lines in FIFO order, running sum, each line gets
# what is left of the SKU's supply after the lines ahead of it, capped at what it waits for.
ANCHOR = """
    INSERT INTO {out} (order_id, line_no, sku, qty)
    SELECT order_id, line_no, sku, allocated FROM (
        SELECT b.order_id, b.line_no, b.sku,
               least(b.qty_waiting, greatest(0, s.qty - (sum(b.qty_waiting) OVER queue - b.qty_waiting))) AS allocated
        FROM {book} AS b JOIN {supply} AS s ON s.sku = b.sku
        WINDOW queue AS (PARTITION BY b.sku ORDER BY b.ordered_at, b.order_id, b.line_no ROWS UNBOUNDED PRECEDING)
    ) AS matched
    WHERE allocated > 0
"""
CHECK_LINES = """
    SELECT count(*) AS lines,
           count(*) FILTER (WHERE status <> 'filled' OR qty_waiting <> 0) AS not_filled,
           count(*) FILTER (WHERE qty_allocated > qty_short) AS overfilled
    FROM waiting_line WHERE sku = ANY($1::text[])
"""
ALLOCATED_PER_SKU = """
    SELECT sku, sum(qty) AS qty FROM allocation WHERE source = 'receipt' AND source_id = ANY($1::text[]) GROUP BY sku
"""
PUT_AWAY_PER_SKU = """
    SELECT sku, sum(put_away) AS qty FROM supply_applied WHERE source = 'receipt' AND source_id = ANY($1::text[]) GROUP BY sku
"""
CLEANUP = (
    "DELETE FROM allocation WHERE sku = ANY($1::text[])",
    "DELETE FROM supply_applied WHERE sku = ANY($1::text[])",
    "DELETE FROM waiting_line WHERE sku = ANY($1::text[])",
    "DELETE FROM book_sku WHERE sku = ANY($1::text[])",
    "DELETE FROM priority_policy WHERE scope = ANY($1::text[])",
    "DELETE FROM inbound_supply WHERE sku = ANY($1::text[])",
    # Events about the run's SKUs (keyed by SKU) are published: keeping them would only make a
    # later start of this database republish them to a new in-memory broker.
    "DELETE FROM outbox WHERE key = ANY($1::text[]) AND sent_at IS NOT NULL",
)


@dataclass(frozen=True)
class SeededLine:
    order_id: UUID
    line_no: int
    sku: str
    qty: int
    ordered_at: datetime

    @property
    def fifo_key(self) -> tuple[datetime, UUID, int]:
        return (self.ordered_at, self.order_id, self.line_no)


@dataclass(frozen=True)
class Anchor:
    seconds: float
    runs: list[float]
    lines: int
    units: int


async def seed_book(conn: asyncpg.Connection, tag: str, skus: list[str], lines: int, now: datetime) -> list[SeededLine]:
    """Insert the waiting lines and their SKU rows, refresh the planner's statistics, and return
    the lines as the allocator will find them."""
    async with conn.transaction():
        await conn.execute(SEED_LINES, tag, skus, lines, now)
        await conn.execute(SEED_SKUS, skus)
        await conn.execute(SEED_POLICIES, skus)
    await vacuum(conn)
    rows = await conn.fetch(SELECT_SEEDED, skus)
    return [SeededLine(r["order_id"], r["line_no"], r["sku"], r["qty_waiting"], r["ordered_at"]) for r in rows]


SEED_PURCHASE_ORDERS = """
    INSERT INTO inbound_supply (purchase_order_id, sku, qty_open, expected_at, version, status, receipt_ids)
    SELECT u.po, u.sku, u.qty, current_date + 7 * (u.round + 1), 1, 'open', '{}'
    FROM unnest($1::text[], $2::text[], $3::int[], $4::int[]) AS u(po, sku, qty, round)
"""


async def seed_purchase_orders(conn: asyncpg.Connection, receipts: list[Receipt]) -> None:
    """For --dated: one open purchase order per receipt, of exactly its quantity, due a week after
    the SKU's previous one, as the allocator holds them once inventory has announced them."""
    await conn.execute(
        SEED_PURCHASE_ORDERS,
        [r.purchase_order_id for r in receipts],
        [r.sku for r in receipts],
        [r.qty for r in receipts],
        [r.round for r in receipts],
    )


async def vacuum(conn: asyncpg.Connection) -> None:
    """What autovacuum would have done by now on a long-running server (this one may live for one
    run only, shorter than autovacuum's one-minute nap): clear the dead rows earlier runs (or a
    rolled-back allocation step) left and give the planner statistics of the seeded book, so
    neither skews the measurement."""
    for table in VACUUMED:
        await conn.execute(f"VACUUM ANALYZE {table}")


async def time_anchor(conn: asyncpg.Connection, tag: str, skus: list[str], supply: dict[str, int], repeats: int = 3) -> Anchor:
    """Copy the seeded book to scratch tables and time the one-statement drain on it (median of
    `repeats` runs; the copy and the truncations between runs are not timed)."""
    book, sup, out = f"bench_anchor_book_{tag}", f"bench_anchor_supply_{tag}", f"bench_anchor_out_{tag}"
    statement = ANCHOR.format(book=book, supply=sup, out=out)
    try:
        await conn.execute(f"CREATE TABLE {book} (order_id uuid, line_no int, sku text, qty_waiting int, ordered_at timestamptz)")
        await conn.execute(
            f"INSERT INTO {book} SELECT order_id, line_no, sku, qty_waiting, ordered_at FROM waiting_line "
            "WHERE sku = ANY($1::text[]) AND status = 'waiting'",
            skus,
        )
        await conn.execute(f"CREATE TABLE {sup} (sku text PRIMARY KEY, qty int NOT NULL)")
        await conn.execute(f"INSERT INTO {sup} SELECT * FROM unnest($1::text[], $2::int[])", list(supply), list(supply.values()))
        await conn.execute(f"CREATE TABLE {out} (order_id uuid, line_no int, sku text, qty int)")
        await conn.execute(f"VACUUM ANALYZE {book}")
        await conn.execute(f"ANALYZE {sup}")
        runs = []
        for _ in range(repeats):
            await conn.execute(f"TRUNCATE {out}")
            started = time.perf_counter()
            await conn.execute(statement)
            runs.append(time.perf_counter() - started)
        lines, units = await conn.fetchrow(f"SELECT count(*), coalesce(sum(qty), 0) FROM {out}")
        return Anchor(statistics.median(runs), runs, lines, units)
    finally:
        for table in (book, sup, out):
            await conn.execute(f"DROP TABLE IF EXISTS {table}")


async def book_state(conn: asyncpg.Connection, skus: list[str], receipt_ids: list[str]) -> dict[str, object]:
    """The allocator's own record of the drain: lines filled, units per SKU, units put away."""
    lines = await conn.fetchrow(CHECK_LINES, skus)
    allocated = {r["sku"]: int(r["qty"]) for r in await conn.fetch(ALLOCATED_PER_SKU, receipt_ids)}
    put_away = {r["sku"]: int(r["qty"]) for r in await conn.fetch(PUT_AWAY_PER_SKU, receipt_ids)}
    return {
        "lines": lines["lines"],
        "not_filled": lines["not_filled"],
        "overfilled": lines["overfilled"],
        "allocated": allocated,
        "put_away": put_away,
    }


async def remove_run(conn: asyncpg.Connection, skus: list[str], inbox_event_ids: list[UUID]) -> None:
    async with conn.transaction():
        for statement in CLEANUP:
            await conn.execute(statement, skus)
        await conn.execute("DELETE FROM inbox WHERE consumer = 'allocator' AND event_id = ANY($1::uuid[])", inbox_event_ids)
