"""The checker run at quiescence: what customers were promised holds in every service's database
and on the broker. Returns readable problems; an empty list means every check passed."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from e2e.conservation import sku_ledger
from faults.faultstack import FaultStack
from faults.flow import FlowRecord
from faults.history import history_problems

from shared.settings import SERVICES

LineKey = tuple[Any, int]
REAL_WORK = ("reserved", "backordered", "allocated", "cross_docked", "cancelled")


async def check(stack: FaultStack, record: FlowRecord, real_work_kinds: tuple[str, ...] = REAL_WORK) -> list[str]:
    problems: list[str] = []
    for sku in record.all_skus:
        problems += [f"{sku}: {p}" for p in (await sku_ledger(stack.connect, sku)).problems()]
    lines = await LineViews.load(stack, record.all_skus)
    problems += lines.agreement()
    problems += await first_in_line(stack, record.all_skus, lines)
    problems += await reflected(stack, record, lines)
    problems += await unsent_outbox_rows(stack)
    problems += await history_problems(stack)
    problems += await real_work(stack, record.all_skus, real_work_kinds)
    return problems


class LineViews:
    """Each order line as orders, inventory and the allocator see it (rows keyed by (order, line))."""

    def __init__(self) -> None:
        self.orders: dict[LineKey, Any] = {}
        self.applied: dict[LineKey, int] = {}
        self.inventory: dict[LineKey, Any] = {}
        self.book: dict[LineKey, Any] = {}
        self.allocations: dict[LineKey, Any] = {}

    @classmethod
    async def load(cls, stack: FaultStack, skus: list[str]) -> LineViews:
        views = cls()
        async with stack.connect("orders") as conn:
            views.orders = _by_line(await conn.fetch("SELECT * FROM order_line WHERE sku = ANY($1)", skus))
            views.applied = {k: r["qty"] for k, r in _by_line(await conn.fetch(
                "SELECT a.order_id, a.line_no, sum(a.qty) AS qty FROM applied_allocation a JOIN order_line l "
                "USING (order_id, line_no) WHERE l.sku = ANY($1) GROUP BY 1, 2", skus)).items()}
        async with stack.connect("inventory") as conn:
            views.inventory = _by_line(await conn.fetch("SELECT * FROM line_stock WHERE sku = ANY($1)", skus))
        async with stack.connect("allocator") as conn:
            views.book = _by_line(await conn.fetch("SELECT * FROM waiting_line WHERE sku = ANY($1)", skus))
            views.allocations = _by_line(await conn.fetch(
                "SELECT order_id, line_no, sum(qty) AS qty, count(*) AS n, count(DISTINCT (source, source_id)) AS sources "
                "FROM allocation WHERE sku = ANY($1) GROUP BY 1, 2", skus))
        return views

    def agreement(self) -> list[str]:
        problems = []
        for key, line in self.orders.items():
            if found := self._line_problems(key, line):
                problems.append(f"line {key[0]}/{key[1]} ({line['sku']}, {line['state']} in orders): {'; '.join(found)}")
        for key in (self.inventory.keys() | self.book.keys()) - self.orders.keys():
            if not self._tombstone(key):
                problems.append(f"line {key[0]}/{key[1]} is known to inventory or the allocator but not to orders")
        return problems

    def _tombstone(self, key: LineKey) -> bool:
        inventory, book = self.inventory.get(key), self.book.get(key)
        return (inventory is None or inventory["cancelled"]) and (book is None or book["status"] == "cancelled")

    def _line_problems(self, key: LineKey, line: Any) -> list[str]:
        inventory, book = self.inventory.get(key), self.book.get(key)
        allocated = line["allocated_pick"] + line["allocated_cross_dock"]
        supplied = line["reserved"] + allocated
        found = []
        if line["state"] == "pending":
            found.append("still pending at quiescence in orders")
        if supplied > line["qty"]:
            found.append(f"orders holds {supplied} units for a line of {line['qty']}")
        if self.applied.get(key, 0) != allocated:
            found.append(f"orders counts {allocated} allocated but applied_allocation sums {self.applied.get(key, 0)}")
        allocation = self.allocations.get(key)
        if allocation is not None and allocation["n"] != allocation["sources"]:
            found.append(f"allocator allocated to it {allocation['n']} times from {allocation['sources']} sources")
        if book is not None and book["qty_allocated"] != (allocation["qty"] if allocation else 0):
            rows = allocation["qty"] if allocation else 0
            found.append(f"allocator book says {book['qty_allocated']} allocated, its allocation rows {rows}")
        if inventory is None:
            return [*found, f"inventory has no line_stock row (orders: {line['state']})"]
        book_waiting = book is not None and book["status"] == "waiting"
        if line["cancelled"] > 0:
            if not inventory["cancelled"]:
                held = f"reserved {inventory['reserved']}, waiting {inventory['waiting']}"
                found.append(f"cancelled in orders, not in inventory ({held})")
            if book_waiting:
                found.append(f"cancelled in orders, still waiting {book['qty_waiting']} in the allocator's book")
            return found
        if inventory["cancelled"]:
            found.append(f"cancelled in inventory but {line['state']} in orders")
        if book is not None and book["status"] == "cancelled" and line["rejected_reason"] is None:
            found.append(f"cancelled in the allocator's book but {line['state']} in orders")
        if line["rejected_reason"] is not None:
            if inventory["rejection"] is None:
                found.append(f"rejected in orders ({line['rejected_reason']}), not in inventory")
            if book is not None and book["status"] != "cancelled":
                found.append(f"rejected in orders, in the allocator's book as {book['status']}")
            return found
        waiting = 0 if supplied >= line["qty"] else max(line["qty_short"] - allocated, 0)
        if inventory["waiting"] != waiting:
            found.append(f"orders has {waiting} units backordered, inventory {inventory['waiting']} waiting")
        if waiting and not (book_waiting and book["qty_waiting"] == waiting):
            state = f"{book['status']} with {book['qty_waiting']} waiting" if book else "absent"
            found.append(f"orders has {waiting} units backordered, the allocator's book: {state}")
        if not waiting and book_waiting:
            found.append(f"the allocator's book waits {book['qty_waiting']} units, orders none ({line['state']})")
        if line["rejected_reason"] is None and inventory["rejection"] is not None:
            found.append(f"rejected in inventory ({inventory['rejection']}), {line['state']} in orders")
        held = inventory["reserved"] + inventory["cross_docked"] + inventory["shipped"]
        if held + inventory["waiting"] > line["qty"]:
            found.append(f"inventory holds {held} and waits {inventory['waiting']} units for a line of {line['qty']}")
        if held != supplied:
            found.append(f"orders holds {supplied} units, inventory {held}")
        book_allocated = book["qty_allocated"] if book is not None else 0
        if book_allocated != allocated:
            found.append(f"orders counts {allocated} allocated, the allocator {book_allocated}")
        return found


# What each kind of work is, as the events the services emitted for the run's SKUs (the outboxes keep
# them): the final state of a line cannot tell, since a line cancelled before StockReserved or
# StockShort reached orders never shows what inventory did for it.
WORK_EVENTS = {
    "reserved": ("inventory", "StockReserved", ""),
    "backordered": ("inventory", "StockShort", ""),
    "rejected": ("inventory", "LineRejected", ""),
    "allocated": ("allocator", "BackorderAllocated", ""),
    "cross_docked": ("allocator", "BackorderAllocated", "AND (envelope->'payload'->>'cross_dock')::boolean"),
    "cancelled": ("orders", "LineCancelled", ""),
}


async def real_work(stack: FaultStack, skus: list[str], kinds: tuple[str, ...]) -> list[str]:
    """The run did what the checks are about, so they cannot pass on an empty run."""
    counts = {}
    for kind in kinds:
        service, event_type, extra = WORK_EVENTS[kind]
        async with stack.connect(service) as conn:
            counts[kind] = await conn.fetchval(
                f"SELECT count(*) FROM outbox WHERE event_type = $1 AND envelope->'payload'->>'sku' = ANY($2) {extra}",
                event_type, skus,
            )
    return [f"the run did no real work: no line was {kind} (events per kind: {counts})" for kind in kinds if not counts[kind]]


async def first_in_line(stack: FaultStack, skus: list[str], lines: LineViews) -> list[str]:
    """No SKU has units on the shelf while lines wait for it."""
    async with stack.connect("inventory") as conn:
        stock = {r["sku"]: r for r in await conn.fetch("SELECT sku, available, backordered FROM stock WHERE sku = ANY($1)", skus)}
    inventory_waiting: dict[str, int] = defaultdict(int)
    for row in lines.inventory.values():
        if not row["cancelled"]:
            inventory_waiting[row["sku"]] += row["waiting"]
    book_waiting: dict[str, int] = defaultdict(int)
    for row in lines.book.values():
        if row["status"] == "waiting":
            book_waiting[row["sku"]] += row["qty_waiting"]
    problems = []
    for sku, row in stock.items():
        if row["available"] > 0 and (inventory_waiting[sku] or book_waiting[sku]):
            problems.append(f"{sku}: {row['available']} units available on the shelf while lines wait "
                            f"({inventory_waiting[sku]} units in inventory, {book_waiting[sku]} in the allocator's book)")
        if row["backordered"] != inventory_waiting[sku]:
            problems.append(f"{sku}: stock.backordered {row['backordered']} != units its lines wait {inventory_waiting[sku]}")
    return problems


async def reflected(stack: FaultStack, record: FlowRecord, lines: LineViews) -> list[str]:
    """Every request answered 2xx shows in the databases."""
    problems = []
    orders: dict[str, list[Any]] = defaultdict(list)
    for key, row in lines.orders.items():
        orders[str(key[0])].append(row)
    for placed in record.accepted("place"):
        stored = sorted((r["line_no"], r["sku"], r["qty"]) for r in orders.get(placed.answer["id"], []))
        asked = sorted((n, line["sku"], line["qty"]) for n, line in enumerate(placed.body["lines"], start=1))
        if [(s, q) for _, s, q in stored] != [(s, q) for _, s, q in asked]:
            problems.append(f"order {placed.answer['id']} answered {placed.status} but orders holds lines {stored}")
    for cancel in record.accepted("cancel_order", "cancel_line"):
        order_id = cancel.path.split("/")[3]
        wanted = None if cancel.kind == "cancel_order" else int(cancel.path.split("/")[5])
        for answered in cancel.answer["lines"]:
            if wanted is not None and answered["line_no"] != wanted:
                continue
            if answered["state"] not in ("cancelled", "rejected", "shipped"):
                problems.append(f"cancel of {order_id}/{answered['line_no']} answered {cancel.status} "
                                f"with the line {answered['state']}")
            if answered["state"] != "cancelled":
                continue
            key = next((k for k in lines.orders if str(k[0]) == order_id and k[1] == answered["line_no"]), None)
            stored = lines.orders.get(key) if key else None
            if stored is None or stored["cancelled"] == 0:
                problems.append(f"cancel of {order_id}/{answered['line_no']} answered {cancel.status} (cancelled) "
                                f"but orders has it {stored and stored['state']}")
    async with stack.connect("inventory") as conn:
        receipts = {r["receipt_id"] for r in await conn.fetch("SELECT receipt_id FROM receipt")}
    for receipt in record.accepted("receipt"):
        if receipt.body["receipt_id"] not in receipts:
            problems.append(f"receipt {receipt.body['receipt_id']} answered {receipt.status} but inventory has no record")
    return problems


async def unsent_outbox_rows(stack: FaultStack) -> list[str]:
    problems = []
    for service in SERVICES:
        async with stack.connect(service) as conn:
            unsent = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        if unsent:
            problems.append(f"{service}: {unsent} outbox rows never sent")
    return problems


def _by_line(rows: list[Any]) -> dict[LineKey, Any]:
    return {(row["order_id"], row["line_no"]): row for row in rows}
