"""A run of events applied together (as the consumer hands them over) has the effects of applying
them one by one: the same lines booked, the same units to the same lines from the same arrival,
the same cross-dock decisions, the same put-aways, the same supply records and the same final
promised dates; only date moves in between are not announced (each line hears its final date once).

Each example builds two copies of one random book on scratch SKUs, in-process on the session's
allocator database, applies the events to one copy as one run and to the other one at a time, and
rolls everything back. The copies' order ids keep the same relative order, so ties break alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import envelope_for

from services.allocator import handlers, store
from services.allocator.domain.queue import PriorityPolicy
from shared.bus.outbox import UnitOfWork
from shared.events import (
    BackorderAllocated,
    BackorderBooked,
    EtaChanged,
    Event,
    GoodsPutAway,
    GoodsReceived,
    PurchaseOrderChanged,
    PurchaseOrderLine,
    ReceivedLine,
    StockReleased,
    StockShort,
)
from shared.settings import Settings

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
ROLES = ("A", "B")
orders_strategy = st.lists(
    st.fixed_dictionaries({
        "minute": st.integers(0, 3),  # ties in order time, broken by order id
        "tier": st.sampled_from(["vip", "standard"]),
        "partial": st.booleans(),
        # (SKU, qty, booked?): a line never booked keeps its order's other lines held
        "lines": st.lists(st.tuples(st.sampled_from(ROLES), st.integers(1, 5), st.booleans()), min_size=1, max_size=3),
    }),
    min_size=1, max_size=6,
)
# Open purchase orders per SKU: (qty, days from now)
purchase_orders = st.fixed_dictionaries(
    {role: st.lists(st.tuples(st.integers(1, 8), st.integers(5, 30)), max_size=3) for role in ROLES}
)
policies = st.fixed_dictionaries({role: st.sampled_from(PriorityPolicy) for role in ROLES})
# (units of A, units of B, against A's first purchase order?)
receipts_strategy = st.lists(
    st.tuples(st.integers(0, 8), st.integers(0, 8), st.booleans()).filter(lambda receipt: receipt[0] or receipt[1]), max_size=5
)
# (SKU, qty, units still at the dock?)
releases_strategy = st.lists(st.tuples(st.sampled_from(ROLES), st.integers(1, 6), st.booleans()), max_size=3)


@dataclass
class Copy:
    """One copy of the scenario: its SKUs, order ids and everything it emitted."""

    number: int
    tag: str
    prefix: int
    events: list[Event]

    def sku(self, role: str) -> str:
        return f"RUN-{self.tag}-{self.number}{role}"

    def uuid(self, index: int) -> UUID:
        """The copy's id of the scenario's order (or release) `index`: in both copies in index order."""
        return UUID(int=self.prefix + 2 * index + self.number)

    def index(self, uuid: UUID) -> int:
        return (uuid.int - self.prefix) // 2

    def role(self, sku: str) -> str:
        return sku[-1]

    def source(self, source_id: str) -> str:
        """Receipts by their number in the scenario, releases as "release <number>"."""
        if "#" in source_id:
            return source_id.split("#")[-1]
        return f"release {self.index(UUID(source_id))}"


def short_lines(copy: Copy, orders: list[dict[str, Any]]) -> list[StockShort]:
    shorts, seq = [], dict.fromkeys(ROLES, 0)
    for index, order in enumerate(orders):
        for line_no, (role, qty, booked) in enumerate(order["lines"], start=1):
            if booked:
                seq[role] += 1
                shorts.append(StockShort(
                    order_id=copy.uuid(index), line_no=line_no, sku=copy.sku(role), qty_short=qty, qty_reserved=0,
                    ordered_at=T0 + timedelta(minutes=order["minute"]), customer_tier=order["tier"],
                    partial_allowed=order["partial"], order_short_lines=len(order["lines"]), short_seq=seq[role],
                ))
    return shorts


async def prepare(uow: UnitOfWork, copy: Copy, chosen: dict[str, PriorityPolicy], pos: dict[str, Any]) -> None:
    for role in ROLES:
        await store.save_policy(uow.session, copy.sku(role), chosen[role], T0)
        for n, (qty, days) in enumerate(pos[role]):
            po = PurchaseOrderChanged(
                purchase_order_id=f"PO-{copy.tag}-{copy.number}{role}{n}", version=1, supplier="ACME", status="open",
                expected_at=date(2026, 12, 1) + timedelta(days=days), change="test",
                lines=(PurchaseOrderLine(sku=copy.sku(role), qty_open=qty),),
            )
            await handlers.on_purchase_order_changed(po, uow)


async def apply(uow: UnitOfWork, copy: Copy, events: Sequence[Event], together: bool) -> None:
    """Events of one class through their handler: as one run, or one run per event."""
    handler = {StockShort: handlers.on_stock_short, GoodsReceived: handlers.on_goods_received,
               StockReleased: handlers.on_stock_released}[type(events[0])]
    items = [(envelope_for(event), event) for event in events]
    for run in [items] if together else [[item] for item in items]:
        await handler(run, uow)  # type: ignore[operator]
    copy.events += [pending.event for pending in uow.pending]
    uow.pending.clear()


async def book_state(session: AsyncSession, copy: Copy) -> dict[str, Any]:
    """The copy's tables, with its ids mapped back to the scenario's (order index, role, arrival)."""
    skus = [copy.sku(role) for role in ROLES]
    lines = await session.execute(text(
        "SELECT order_id, line_no, qty_waiting, qty_allocated, status, promised_date FROM waiting_line "
        "WHERE sku = ANY(:skus)"), {"skus": skus})
    counters = await session.execute(text(
        "SELECT sku, lines_backordered, shorts_seen FROM book_sku WHERE sku = ANY(:skus)"), {"skus": skus})
    supply = await session.execute(text(
        "SELECT source, source_id, sku, qty, put_away FROM supply_applied WHERE sku = ANY(:skus)"), {"skus": skus})
    # A line's date matters while it waits: one that was filled keeps whatever date it had last,
    # and a run re-dates once, after its last event.
    return {
        "lines": sorted((copy.index(r[0]), *r[1:5], r[5] if r[4] == "waiting" else None) for r in lines),
        "counters": sorted((copy.role(r[0]), *r[1:]) for r in counters),
        "supply": sorted((r[0], copy.source(r[1]), copy.role(r[2]), r[3], r[4]) for r in supply),
    }


def last_told(copy: Copy) -> dict[tuple[int, int], date | None]:
    """The date each line heard last (BackorderBooked, then every EtaChanged)."""
    told: dict[tuple[int, int], date | None] = {}
    for event in copy.events:
        if isinstance(event, BackorderBooked):
            told[(copy.index(event.order_id), event.line_no)] = event.promised_date
        elif isinstance(event, EtaChanged):
            told[(copy.index(event.order_id), event.line_no)] = event.new_date
    return told


def assert_told_what_is_stored(copy: Copy, state: dict[str, Any]) -> None:
    told = last_told(copy)
    for order, line_no, _, _, status, promised in state["lines"]:
        if status == "waiting":
            assert told[(order, line_no)] == promised, (copy.number, order, line_no)


async def scenario(sessions: async_sessionmaker[AsyncSession], settings_: Settings, steps: Any) -> tuple[Copy, Copy, list[Any]]:
    """Run `steps(uow, copy, together)` for the copy applied together and the one applied one by
    one, in one transaction that is rolled back; returns both copies and their states."""
    tag, prefix = uuid4().hex[:10], (uuid4().int >> 16) << 16
    copies = (Copy(0, tag, prefix, []), Copy(1, tag, prefix, []))
    states = []
    async with sessions() as session:
        transaction = await session.begin()
        try:
            uow = UnitOfWork(session=session, producer="allocator", settings=settings_)
            for copy in copies:
                await steps(uow, copy, copy.number == 0)
                states.append(await book_state(session, copy))
        finally:
            await transaction.rollback()
    return copies[0], copies[1], states


def line_orders(*lines: tuple[int, str, int], partial: bool = True) -> list[dict[str, Any]]:
    """One single-line order per (minute, SKU, qty), booked."""
    return [
        {"minute": minute, "tier": "standard", "partial": partial, "lines": [(role, qty, True)]} for minute, role, qty in lines
    ]


DUE_DATE_ON_A = {"A": PriorityPolicy.DUE_DATE, "B": PriorityPolicy.FIFO}


@settings(max_examples=10, deadline=None)
@given(orders=orders_strategy, chosen=policies, pos=purchase_orders, repeats=st.lists(st.integers(0, 20), max_size=3))
# Under due_date the line booked (and promised) first is ahead of an older line booked after it.
@example(orders=line_orders((3, "A", 3), (0, "A", 3)), chosen=DUE_DATE_ON_A, pos={"A": [(3, 10)], "B": []}, repeats=[])
async def test_a_run_of_short_lines_books_what_booking_them_one_by_one_does(
    stack: Any, sessions: async_sessionmaker[AsyncSession], orders: list[dict[str, Any]], chosen: dict[str, PriorityPolicy],
    pos: dict[str, Any], repeats: list[int],
) -> None:
    async def steps(uow: UnitOfWork, copy: Copy, together: bool) -> None:
        await prepare(uow, copy, chosen, pos)
        shorts = short_lines(copy, orders)
        shorts += [shorts[n % len(shorts)] for n in repeats if shorts]  # redelivered under new event ids
        if shorts:
            await apply(uow, copy, shorts, together)

    run, one_by_one, (state_run, state_one_by_one) = await scenario(sessions, stack.settings, steps)

    assert state_run == state_one_by_one

    def booked(copy: Copy) -> list[tuple[int, int]]:
        return [(copy.index(e.order_id), e.line_no) for e in copy.events if isinstance(e, BackorderBooked)]

    assert booked(run) == booked(one_by_one)
    assert len(booked(run)) == len(set(booked(run)))
    assert_told_what_is_stored(run, state_run)
    assert_told_what_is_stored(one_by_one, state_one_by_one)


@settings(max_examples=10, deadline=None)
@given(orders=orders_strategy, chosen=policies, pos=purchase_orders, receipts=receipts_strategy,
       repeats=st.lists(st.integers(0, 20), max_size=2), releases=releases_strategy)
# The second receipt completes an order the first one only started: it cross-docks, the first is held.
@example(orders=line_orders((0, "A", 4), partial=False), chosen=DUE_DATE_ON_A, pos={"A": [], "B": []},
         receipts=[(2, 0, False), (2, 0, False)], repeats=[], releases=[])
# Under due_date, the first receipt moves the fourth line up to its first date (d+20), ahead of the
# third (first promised d+30): the second receipt serves the fourth line.
@example(orders=line_orders((0, "A", 2), (1, "A", 2), (2, "A", 2), (3, "A", 2)), chosen=DUE_DATE_ON_A,
         pos={"A": [(2, 10), (2, 20), (2, 30)], "B": []}, receipts=[(4, 0, False), (2, 0, False)], repeats=[], releases=[])
async def test_a_run_of_arrivals_serves_what_serving_them_one_by_one_does(
    stack: Any, sessions: async_sessionmaker[AsyncSession], orders: list[dict[str, Any]], chosen: dict[str, PriorityPolicy],
    pos: dict[str, Any], receipts: list[tuple[int, int, bool]], repeats: list[int], releases: list[tuple[str, int, bool]],
) -> None:
    async def steps(uow: UnitOfWork, copy: Copy, together: bool) -> None:
        await prepare(uow, copy, chosen, pos)
        shorts = short_lines(copy, orders)
        if shorts:
            await apply(uow, copy, shorts, True)  # booked alike in both copies
        received = [
            GoodsReceived(
                receipt_id=f"R-{copy.tag}-{copy.number}#{n}", warehouse="WH-1",
                purchase_order_id=f"PO-{copy.tag}-{copy.number}A0" if against_po else None,
                lines=tuple(ReceivedLine(sku=copy.sku(role), qty=qty) for role, qty in zip(ROLES, (a, b), strict=True) if qty),
            )
            for n, (a, b, against_po) in enumerate(receipts)
        ]
        received += [received[n % len(received)] for n in repeats if received]  # the same receipt id again
        if received:
            await apply(uow, copy, received, together)
        released = [
            StockReleased(release_id=copy.uuid(n), sku=copy.sku(role), qty=qty, reason="count",
                          receipt_id=f"R-{copy.tag}-{copy.number}#dock" if at_dock else None)
            for n, (role, qty, at_dock) in enumerate(releases)
        ]
        if released:
            await apply(uow, copy, released, together)

    run, one_by_one, (state_run, state_one_by_one) = await scenario(sessions, stack.settings, steps)

    def decided(copy: Copy) -> list[tuple[Any, ...]]:
        """What each arrival did, in the order it was emitted."""
        served: list[tuple[Any, ...]] = []
        for e in copy.events:
            if isinstance(e, BackorderAllocated):
                served.append((copy.source(e.source_id), copy.index(e.order_id), e.line_no, copy.role(e.sku), e.qty,
                               e.cross_dock))
            elif isinstance(e, GoodsPutAway):
                served.append((copy.source(e.source_id), copy.role(e.sku), e.qty, e.shorts_seen))
        return served

    assert decided(run) == decided(one_by_one)
    assert state_run == state_one_by_one
    assert_told_what_is_stored(run, state_run)
    assert_told_what_is_stored(one_by_one, state_one_by_one)
