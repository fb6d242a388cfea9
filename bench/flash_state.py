"""What the flash sale left in the services' databases, and whether it is right: every accepted order
settled, no unit sold twice, units conserved, shipments grouped as promised. Reads only the orders
tables (`orders`, `order_line`), the orders outbox (ShipmentRequested as emitted, not as consumed)
and inventory's `stock`."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from shared.devstack.stack import Devstack

INFLOW = ("received", "counted_in")
HELD = ("available", "reserved", "pending", "cross_docked", "shipped", "counted_out")
BUCKETS = (*HELD, "received", "counted_in", "backordered")


async def wait_settled(stack: Devstack, skus: list[str], timeout_s: float, every_s: float = 0.1) -> float | None:
    """Poll until no line of the run's SKUs is `pending`; returns that moment (time.monotonic()),
    or None after `timeout_s`. Every accepted order's lines were committed with its 201."""
    deadline = time.monotonic() + timeout_s
    async with stack.connect("orders") as conn:
        while True:
            pending = await conn.fetchval(
                "SELECT count(*) FROM order_line WHERE state = 'pending' AND sku = ANY($1::text[])", skus)
            now = time.monotonic()
            if pending == 0:
                return now
            if now > deadline:
                return None
            await asyncio.sleep(every_s)


@dataclass
class SaleState:
    """The run's orders, their shipments and their SKUs' stock, read at quiescence."""

    orders_found: int = 0
    line_states: Counter[str] = field(default_factory=Counter)
    reserved_by_orders: Counter[str] = field(default_factory=Counter)
    stock: dict[str, dict[str, int]] = field(default_factory=dict)
    shipments: int = 0
    checks: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


async def read_and_check(stack: Devstack, order_ids: list[str], skus: list[str]) -> SaleState:
    """`order_ids`: every order the run placed (warm-up included), `skus`: every SKU it created."""
    ids = [UUID(i) for i in order_ids]
    state = SaleState()
    async with stack.connect("orders") as conn:
        lines = await conn.fetch(
            "SELECT l.order_id, o.partial_allowed, l.line_no, l.sku, l.qty, l.reserved, l.state"
            " FROM order_line l JOIN orders o ON o.id = l.order_id WHERE l.order_id = ANY($1::uuid[])", ids)
        requested = await conn.fetch(
            "SELECT key, envelope->'payload'->'lines' AS lines FROM outbox"
            " WHERE event_type = 'ShipmentRequested' AND key = ANY($1::text[])", [str(i) for i in ids])
    async with stack.connect("inventory") as conn:
        rows = await conn.fetch(f"SELECT sku, {', '.join(BUCKETS)} FROM stock WHERE sku = ANY($1::text[])", skus)
    state.stock = {row["sku"]: {b: row[b] for b in BUCKETS} for row in rows}
    state.shipments = len(requested)
    state.orders_found = len({line["order_id"] for line in lines})
    for line in lines:
        state.line_states[line["state"]] += 1
        state.reserved_by_orders[line["sku"]] += line["reserved"]
    check_settled(state, len(set(ids)))
    check_stock(state, skus)
    check_shipments(state, lines, requested)
    return state


def check_settled(state: SaleState, placed: int) -> None:
    state.checks["orders: every accepted order recorded"] = state.orders_found == placed
    if state.orders_found != placed:
        state.problems.append(f"{placed} orders accepted, {state.orders_found} found in the orders database")
    pending = state.line_states.get("pending", 0)
    state.checks["orders: every accepted order settled (no line pending)"] = pending == 0
    if pending:
        state.problems.append(f"{pending} lines still pending")
    rejected = state.line_states.get("rejected", 0)
    state.checks["orders: no line rejected (every SKU backorderable, no cap)"] = rejected == 0
    if rejected:
        state.problems.append(f"{rejected} lines rejected")


def check_stock(state: SaleState, skus: list[str]) -> None:
    """Per SKU: nothing reserved beyond what came in, no bucket below zero, every unit that came in
    somewhere (`Buckets.conserved`), orders and inventory agreeing on what is reserved, and nothing
    left on the shelf or undecided while lines wait."""
    oversold, unconserved, disagree, left = [], [], [], []
    for sku in skus:
        s = state.stock.get(sku)
        if s is None:
            oversold.append(f"{sku}: no stock row")
            continue
        came_in = sum(s[b] for b in INFLOW)
        if s["reserved"] > came_in or any(v < 0 for v in s.values()) or state.reserved_by_orders[sku] > came_in:
            oversold.append(f"{sku}: came in {came_in}, inventory reserved {s['reserved']}, orders hold "
                            f"{state.reserved_by_orders[sku]}, available {s['available']}")
        if came_in != sum(s[b] for b in HELD):
            unconserved.append(f"{sku}: received + counted_in {came_in} != buckets {sum(s[b] for b in HELD)} ({s})")
        if state.reserved_by_orders[sku] != s["reserved"]:
            disagree.append(f"{sku}: orders hold {state.reserved_by_orders[sku]} reserved, inventory {s['reserved']}")
        if s["backordered"] > 0 and (s["available"] > 0 or s["pending"] > 0):
            left.append(f"{sku}: {s['available']} available and {s['pending']} pending while {s['backordered']} wait")
    state.checks["stock: zero oversell (reserved <= what came in, no bucket < 0)"] = not oversold
    state.checks["stock: conserved (received + counted_in = available + reserved + pending + cross_docked"
                 " + shipped + counted_out)"] = not unconserved
    state.checks["stock: orders and inventory agree on reserved units"] = not disagree
    state.checks["stock: first in line (nothing available or pending while lines wait)"] = not left
    for found in (oversold, unconserved, disagree, left):
        state.problems.extend(found[:5])


def check_shipments(state: SaleState, lines: list[asyncpg.Record], requested: list[asyncpg.Record]) -> None:
    """ShipmentRequested is a payment capture: an order reserved in full at placement gets exactly
    one; a ship-complete order never more than one, and none while a line waits; and what all of
    an order's requests ask for is exactly what it holds."""
    per_order: Counter[str] = Counter()
    units: Counter[tuple[str, int]] = Counter()
    for row in requested:
        per_order[row["key"]] += 1
        for item in json.loads(row["lines"]):
            units[(row["key"], item["line_no"])] += item["qty"]
    orders: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for line in lines:
        orders[str(line["order_id"])].append(line)
    not_one, complete_twice, complete_early, wrong_units = [], [], [], []
    for order_id, its_lines in orders.items():
        reserved_in_full = all(line["reserved"] == line["qty"] for line in its_lines)
        ship_complete = not its_lines[0]["partial_allowed"]
        count = per_order[order_id]
        if reserved_in_full and count != 1:
            not_one.append(f"order {order_id} ({len(its_lines)} lines reserved in full"
                           f"{', ship-complete' if ship_complete else ''}): {count} ShipmentRequested")
        if ship_complete and count > 1:
            complete_twice.append(f"ship-complete order {order_id}: {count} ShipmentRequested")
        if ship_complete and not reserved_in_full and count:
            complete_early.append(f"ship-complete order {order_id}: {count} ShipmentRequested while a line waits")
        for line in its_lines:
            expected = line["reserved"] if reserved_in_full or not ship_complete else 0
            asked = units[(order_id, line["line_no"])]
            if asked != expected:
                wrong_units.append(f"order {order_id} line {line['line_no']}: {asked} units requested, {expected} expected")
    state.checks["shipments: every order reserved in full at placement has exactly one ShipmentRequested"] = not not_one
    state.checks["shipments: no ship-complete order has more than one ShipmentRequested"] = not complete_twice
    state.checks["shipments: no ship-complete order requested while a line waits"] = not complete_early
    state.checks["shipments: every reserved unit requested exactly once, nothing else"] = not wrong_units
    if not_one:
        state.problems.append(f"{len(not_one)} orders reserved in full without exactly one ShipmentRequested, e.g.")
    for found in (not_one, complete_twice, complete_early, wrong_units):
        state.problems.extend(found[:5])
