"""Reads every service's state for one SKU and checks that no unit was created, lost or given twice.
Call it only when the stack is quiescent (nothing in flight)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class SkuLedger:
    stock: dict[str, int]
    released: int
    supply_applied: int
    put_away: int
    allocated_by_allocator: int
    allocated_by_orders: int
    overfilled_book_lines: int
    overfilled_order_lines: int

    def problems(self) -> list[str]:
        s = self.stock
        found = []
        inflow = s["received"] + s["counted_in"]
        held = s["available"] + s["reserved"] + s["pending"] + s["cross_docked"] + s["shipped"] + s["counted_out"]
        if inflow != held:
            found.append(f"inventory: received+counted_in {inflow} != buckets {held} ({s})")
        if s["pending"] != 0:
            found.append(f"inventory: {s['pending']} units still pending an allocator decision")
        if self.supply_applied != s["received"] + self.released:
            handed = s["received"] + self.released
            found.append(f"allocator saw {self.supply_applied} units of supply, inventory handed it {handed}")
        if self.allocated_by_allocator + self.put_away != self.supply_applied:
            allocated, put_away = self.allocated_by_allocator, self.put_away
            found.append(f"allocator: allocated {allocated} + put away {put_away} != supply {self.supply_applied}")
        if self.overfilled_book_lines:
            found.append(f"allocator: {self.overfilled_book_lines} lines got more than they waited for")
        if self.overfilled_order_lines:
            found.append(f"orders: {self.overfilled_order_lines} lines hold more than they ordered")
        return found


async def sku_ledger(db: Any, sku: str) -> SkuLedger:
    async with db("inventory") as conn:
        stock = dict(await conn.fetchrow(
            "SELECT available, reserved, pending, cross_docked, shipped, received, counted_in, counted_out, backordered"
            " FROM stock WHERE sku = $1", sku))
        released = await conn.fetchval("SELECT coalesce(sum(qty), 0) FROM stock_release WHERE sku = $1", sku)
    async with db("allocator") as conn:
        supply, put_away = await conn.fetchrow(
            "SELECT coalesce(sum(qty), 0), coalesce(sum(put_away), 0) FROM supply_applied WHERE sku = $1", sku)
        allocated = await conn.fetchval("SELECT coalesce(sum(qty), 0) FROM allocation WHERE sku = $1", sku)
        overfilled_book = await conn.fetchval(
            "SELECT count(*) FROM waiting_line WHERE sku = $1 AND qty_allocated > qty_short", sku)
    async with db("orders") as conn:
        allocated_orders = await conn.fetchval(
            "SELECT coalesce(sum(allocated_pick + allocated_cross_dock), 0) FROM order_line WHERE sku = $1", sku)
        overfilled_orders = await conn.fetchval(
            "SELECT count(*) FROM order_line WHERE sku = $1 AND reserved + allocated_pick + allocated_cross_dock > qty", sku)
    return SkuLedger(stock, released, supply, put_away, allocated, allocated_orders, overfilled_book, overfilled_orders)


async def assert_conserved(db: Any, sku: str) -> SkuLedger:
    ledger = await sku_ledger(db, sku)
    assert not ledger.problems(), ledger.problems()
    return ledger
