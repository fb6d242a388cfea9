"""The allocator against the live stack: the book, promised dates, allocation of receipts and
releases, idempotency, cancellation, priority policies over HTTP, statistics and bad input."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from shared.devstack.stack import Devstack
from shared.events import (
    Customer,
    GoodsReceived,
    LineCancelled,
    OrderedLine,
    OrderPlaced,
    PurchaseOrderChanged,
    PurchaseOrderLine,
    ReceivedLine,
    StockReleased,
    StockShort,
    Stream,
)
from tests.support import events_of, publish, read_topic

PoStatus = Literal["open", "cancelled", "closed"]
Connect = Callable[[str], AbstractAsyncContextManager[asyncpg.Connection]]
START = datetime.now(UTC) - timedelta(hours=2)
TODAY = date.today()


def new_sku() -> str:
    return f"SKU-{uuid4().hex[:10]}"


def short(
    sku: str,
    qty: int,
    *,
    minute: int,
    order_id: UUID | None = None,
    line_no: int = 1,
    tier: str = "standard",
    partial: bool = True,
    short_lines: int = 1,
) -> StockShort:
    return StockShort(
        order_id=order_id or uuid4(),
        line_no=line_no,
        sku=sku,
        qty_short=qty,
        qty_reserved=0,
        ordered_at=START + timedelta(minutes=minute),
        customer_tier=tier,
        partial_allowed=partial,
        order_short_lines=short_lines,
    )


def purchase_order(po: str, sku: str, qty: int, days: int, version: int = 1, status: PoStatus = "open") -> PurchaseOrderChanged:
    return PurchaseOrderChanged(
        purchase_order_id=po,
        version=version,
        supplier="ACME",
        status=status,
        expected_at=TODAY + timedelta(days=days),
        lines=(PurchaseOrderLine(sku=sku, qty_open=qty),),
        change="test",
    )


def cancel(line: StockShort) -> LineCancelled:
    return LineCancelled(
        order_id=line.order_id, line_no=line.line_no, sku=line.sku, qty_cancelled=line.qty_short, reason="customer"
    )


def receipt(receipt_id: str, *lines: tuple[str, int]) -> GoodsReceived:
    return GoodsReceived(receipt_id=receipt_id, warehouse="WH-1", lines=tuple(ReceivedLine(sku=s, qty=q) for s, q in lines))


async def book_of(allocator_api: httpx.AsyncClient, sku: str) -> list[dict[str, Any]]:
    response = await allocator_api.get("/v1/backorders", params={"sku": sku})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def eta_changes_of(stack: Devstack, sku: str) -> list[tuple[str, int, str | None, str | None, str]]:
    envelopes = await events_of(stack.settings, stack.settings.topic(Stream.ALLOCATIONS), "EtaChanged", sku=sku)
    return [
        (e.payload["order_id"], e.payload["line_no"], e.payload["previous_date"], e.payload["new_date"], e.payload["reason"])
        for e in envelopes
    ]


async def allocations_of(stack: Devstack, sku: str) -> list[tuple[str, int, bool, str]]:
    envelopes = await events_of(stack.settings, stack.settings.topic(Stream.ALLOCATIONS), "BackorderAllocated", sku=sku)
    return [(e.payload["order_id"], e.payload["qty"], e.payload["cross_dock"], e.payload["source_id"]) for e in envelopes]


async def put_aways_of(stack: Devstack, sku: str) -> list[tuple[int, str, str]]:
    envelopes = await events_of(stack.settings, stack.settings.topic(Stream.STOCK), "GoodsPutAway", sku=sku)
    return [(e.payload["qty"], e.payload["source"], e.payload["source_id"]) for e in envelopes]


def day(days: int) -> str:
    return (TODAY + timedelta(days=days)).isoformat()


async def test_short_lines_enter_the_book_in_fifo_order_with_positions(
    stack: Devstack, producer: AIOKafkaProducer, allocator_api: httpx.AsyncClient
) -> None:
    sku = new_sku()
    late, early, middle = short(sku, 2, minute=30), short(sku, 5, minute=0), short(sku, 1, minute=10)
    for event in (late, early, middle):
        await publish(producer, stack.settings, event)
    await stack.wait_quiescent()

    items = await book_of(allocator_api, sku)

    assert [(i["position"], i["order_id"], i["qty_waiting"]) for i in items] == [
        (1, str(early.order_id), 5),
        (2, str(middle.order_id), 1),
        (3, str(late.order_id), 2),
    ]
    assert {(i["policy"], i["promised_date"], i["qty_allocated"], i["tier"]) for i in items} == {("fifo", None, 0, "standard")}
    assert all(i["age_seconds"] > 0 for i in items)
    everything = (await allocator_api.get("/v1/backorders", params={"limit": 1000})).json()
    assert everything["total"] >= 3


async def test_purchase_orders_give_promised_dates_and_a_slip_redates_exactly_the_lines_it_covers(
    stack: Devstack, producer: AIOKafkaProducer, allocator_api: httpx.AsyncClient
) -> None:
    sku = new_sku()
    a, b, c = short(sku, 4, minute=0), short(sku, 4, minute=1), short(sku, 4, minute=2)
    for event in (a, b, c):
        await publish(producer, stack.settings, event)
    await stack.wait_quiescent()  # booked first: these lines' dates come from the purchase orders
    po1, po2 = f"PO-{uuid4().hex[:8]}", f"PO-{uuid4().hex[:8]}"
    await publish(producer, stack.settings, purchase_order(po1, sku, 4, days=10))
    await stack.wait_quiescent()  # keyed by purchase order: two POs may arrive in either order
    await publish(producer, stack.settings, purchase_order(po2, sku, 4, days=20))
    await stack.wait_quiescent()

    assert [i["promised_date"] for i in await book_of(allocator_api, sku)] == [day(10), day(20), None]
    dated = await eta_changes_of(stack, sku)
    assert sorted(dated) == sorted(
        [
            (str(a.order_id), 1, None, day(10), "purchase_order_changed"),
            (str(b.order_id), 1, None, day(20), "purchase_order_changed"),
        ]
    )

    # PO-2 slips by five days (version 2); then a stale copy of version 1 arrives again.
    await publish(producer, stack.settings, purchase_order(po2, sku, 4, days=25, version=2))
    await stack.wait_quiescent()
    await publish(producer, stack.settings, purchase_order(po2, sku, 4, days=20, version=1))
    await stack.wait_quiescent()

    assert [i["promised_date"] for i in await book_of(allocator_api, sku)] == [day(10), day(25), None]
    assert (await eta_changes_of(stack, sku))[len(dated) :] == [(str(b.order_id), 1, day(20), day(25), "purchase_order_changed")]

    # A line entering the book is announced once, as BackorderBooked with its date (not as an
    # EtaChanged); cancelling PO-1 then moves everyone.
    await publish(producer, stack.settings, purchase_order(f"PO-{uuid4().hex[:8]}", sku, 20, days=30))
    await stack.wait_quiescent()
    d = short(sku, 2, minute=3)
    await publish(producer, stack.settings, d)
    await stack.wait_quiescent()
    seen = len(await eta_changes_of(stack, sku))
    await publish(producer, stack.settings, purchase_order(po1, sku, 4, days=10, version=2, status="cancelled"))
    await stack.wait_quiescent()

    changes = await eta_changes_of(stack, sku)
    assert changes[len(dated) + 1 : seen] == [(str(c.order_id), 1, None, day(30), "purchase_order_changed")]
    bookings = await events_of(stack.settings, stack.settings.topic(Stream.ALLOCATIONS), "BackorderBooked", sku=sku)
    assert [(e.payload["order_id"], e.payload["qty_waiting"], e.payload["promised_date"]) for e in bookings] == [
        (str(a.order_id), 4, None), (str(b.order_id), 4, None), (str(c.order_id), 4, None), (str(d.order_id), 2, day(30)),
    ]
    assert sorted(changes[seen:]) == sorted(
        [
            (str(a.order_id), 1, day(10), day(25), "purchase_order_cancelled"),
            (str(b.order_id), 1, day(25), day(30), "purchase_order_cancelled"),
        ]
    )


async def test_a_receipt_seen_before_its_purchase_order_update_is_not_promised_twice(
    stack: Devstack, producer: AIOKafkaProducer, allocator_api: httpx.AsyncClient
) -> None:
    """Receipts and purchase-order changes travel on different topics: whichever comes first, units
    received against a purchase order are not also counted as still on their way."""
    sku, po1, po2 = new_sku(), f"PO-{uuid4().hex[:8]}", f"PO-{uuid4().hex[:8]}"
    lines = [short(sku, 1, minute=m) for m in range(6)]
    for event in lines:
        await publish(producer, stack.settings, event)
    await stack.wait_quiescent()
    await publish(producer, stack.settings, purchase_order(po1, sku, 4, days=10))
    await stack.wait_quiescent()
    await publish(producer, stack.settings, purchase_order(po2, sku, 4, days=20))
    await stack.wait_quiescent()

    delivered = receipt(f"R-{uuid4().hex[:8]}", (sku, 2)).model_copy(update={"purchase_order_id": po1})
    await publish(producer, stack.settings, delivered)  # before inventory's copy of PO1 says so
    await stack.wait_quiescent()
    assert [i["promised_date"] for i in await book_of(allocator_api, sku)] == [day(10), day(10), day(20), day(20)]

    updated = purchase_order(po1, sku, 2, days=10, version=2).model_copy(update={"receipt_ids": (delivered.receipt_id,)})
    changes_before = await eta_changes_of(stack, sku)
    await publish(producer, stack.settings, updated)
    await stack.wait_quiescent()
    assert [i["promised_date"] for i in await book_of(allocator_api, sku)] == [day(10), day(10), day(20), day(20)]
    assert await eta_changes_of(stack, sku) == changes_before  # nobody was told a date twice


async def test_goods_received_allocate_in_priority_order_cross_dock_per_order_and_put_the_rest_away(
    stack: Devstack, producer: AIOKafkaProducer, allocator_api: httpx.AsyncClient, db: Connect
) -> None:
    sku, other_sku = new_sku(), new_sku()
    completes = short(sku, 3, minute=0, partial=False)
    partial_ok = short(sku, 2, minute=1, partial=True)
    other_line_waits = short(sku, 4, minute=2, partial=False, short_lines=2)
    second_line = short(other_sku, 1, minute=2, order_id=other_line_waits.order_id, line_no=2, partial=False, short_lines=2)
    filled_in_parts = short(sku, 5, minute=3, partial=False)
    for event in (completes, partial_ok, other_line_waits, second_line, filled_in_parts):
        await publish(producer, stack.settings, event)
    await stack.wait_quiescent()

    first, second, third = (f"RCV-{uuid4().hex[:8]}" for _ in range(3))
    await publish(producer, stack.settings, receipt(first, (sku, 6), (sku, 5)))  # two lines of one SKU: 11 units
    await stack.wait_quiescent()

    assert sorted(await allocations_of(stack, sku)) == sorted(
        [
            (str(completes.order_id), 3, True, first),
            (str(partial_ok.order_id), 2, True, first),
            (str(other_line_waits.order_id), 4, False, first),
            (str(filled_in_parts.order_id), 2, False, first),
        ]
    )
    assert await put_aways_of(stack, sku) == []
    assert [(i["order_id"], i["qty_waiting"], i["qty_allocated"]) for i in await book_of(allocator_api, sku)] == [
        (str(filled_in_parts.order_id), 3, 2)
    ]

    await publish(producer, stack.settings, receipt(second, (sku, 7), (other_sku, 1)))
    await stack.wait_quiescent()

    assert (str(filled_in_parts.order_id), 3, True, second) in await allocations_of(stack, sku)
    assert await allocations_of(stack, other_sku) == [(str(second_line.order_id), 1, True, second)]
    assert await put_aways_of(stack, sku) == [(4, "receipt", second)]
    assert await book_of(allocator_api, sku) == []

    await publish(producer, stack.settings, receipt(third, (sku, 2)))  # nobody waits: all to the shelf
    await stack.wait_quiescent()
    assert await put_aways_of(stack, sku) == [(4, "receipt", second), (2, "receipt", third)]
    async with db("allocator") as conn:
        rows = await conn.fetch("SELECT source_id, sum(qty) AS qty FROM allocation WHERE sku = $1 GROUP BY source_id", sku)
        applied = await conn.fetch("SELECT source_id, qty, put_away FROM supply_applied WHERE sku = $1", sku)
    assert {r["source_id"]: r["qty"] for r in rows} == {first: 11, second: 3}
    assert {(r["source_id"], r["qty"], r["put_away"]) for r in applied} == {(first, 11, 0), (second, 7, 4), (third, 2, 2)}


async def test_the_same_receipt_id_under_another_event_id_has_one_effect(
    stack: Devstack, producer: AIOKafkaProducer, db: Connect
) -> None:
    sku = new_sku()
    line = short(sku, 2, minute=0)
    await publish(producer, stack.settings, line)
    await stack.wait_quiescent()
    receipt_id = f"RCV-{uuid4().hex[:8]}"

    await publish(producer, stack.settings, receipt(receipt_id, (sku, 5)))
    await publish(producer, stack.settings, receipt(receipt_id, (sku, 5)))  # publish() gives each a new event id
    await stack.wait_quiescent()

    assert await allocations_of(stack, sku) == [(str(line.order_id), 2, True, receipt_id)]
    assert await put_aways_of(stack, sku) == [(3, "receipt", receipt_id)]
    async with db("allocator") as conn:
        assert await conn.fetchval("SELECT count(*) FROM allocation WHERE sku = $1", sku) == 1

    # The same id with different content cannot be applied twice either: it is dead-lettered.
    await publish(producer, stack.settings, receipt(receipt_id, (sku, 9)))
    await stack.wait_quiescent()
    dlq = f"{stack.settings.topic(Stream.RECEIPTS)}.dlq"
    dead = [m for m in await read_topic(stack.settings, dlq) if m.key == receipt_id and m.headers["dlq.consumer"] == "allocator"]
    assert len(dead) == 1
    assert "already applied" in dead[0].headers["dlq.reason"]
    assert await put_aways_of(stack, sku) == [(3, "receipt", receipt_id)]


async def test_a_redelivered_event_has_no_second_effect(
    stack: Devstack, producer: AIOKafkaProducer, allocator_api: httpx.AsyncClient
) -> None:
    sku = new_sku()
    line = short(sku, 5, minute=0)
    await publish(producer, stack.settings, line)
    placed = OrderPlaced(
        order_id=line.order_id,
        external_id=uuid4().hex,
        channel="web",
        customer=Customer(id="c-1", email="c1@example.com"),
        partial_allowed=True,
        placed_at=START,
        lines=(OrderedLine(line_no=1, sku=sku, qty=5),),
    )
    release = StockReleased(release_id=uuid4(), sku=sku, qty=2, reason="cancellation")
    placed_id, release_id = uuid4(), uuid4()
    for _ in range(2):
        await publish(producer, stack.settings, placed, event_id=placed_id)
        await publish(producer, stack.settings, release, event_id=release_id)
    await stack.wait_quiescent()

    # The ordered-lines counter has no business key of its own: only the inbox keeps it at 1.
    stats = (await allocator_api.get("/v1/backorders/stats", params={"sku": sku})).json()["items"]
    assert [(s["lines_ordered"], s["lines_backordered"], s["backorder_rate"]) for s in stats] == [(1, 1, 1.0)]
    # A release is a pick from the shelf, never a cross-dock.
    assert await allocations_of(stack, sku) == [(str(line.order_id), 2, False, str(release.release_id))]
    assert [(i["qty_waiting"], i["qty_allocated"]) for i in await book_of(allocator_api, sku)] == [(3, 2)]


async def test_a_release_of_units_still_at_the_dock_cross_docks_where_the_order_can_ship(
    stack: Devstack, producer: AIOKafkaProducer
) -> None:
    """Inventory hands a receipt's units back when they were put away before their lines were
    booked: they never left the dock, so they go straight to shipping like the receipt would have."""
    sku = new_sku()
    may_ship, held = short(sku, 2, minute=0), short(sku, 1, minute=1, partial=False, short_lines=2)
    for line in (may_ship, held):
        await publish(producer, stack.settings, line)
    release = StockReleased(release_id=uuid4(), sku=sku, qty=3, reason="backordered meanwhile", receipt_id="RCV-late")
    await publish(producer, stack.settings, release)
    await stack.wait_quiescent()
    # The second order waits for another line too: its unit is held, not shipped alone.
    assert sorted(await allocations_of(stack, sku)) == sorted([
        (str(may_ship.order_id), 2, True, str(release.release_id)),
        (str(held.order_id), 1, False, str(release.release_id)),
    ])


async def test_a_cancelled_line_leaves_the_book_and_a_later_stock_short_for_it_is_ignored(
    stack: Devstack, producer: AIOKafkaProducer, allocator_api: httpx.AsyncClient
) -> None:
    sku = new_sku()
    first, second = short(sku, 3, minute=0), short(sku, 2, minute=1)
    await publish(producer, stack.settings, first)
    await publish(producer, stack.settings, second)
    await publish(producer, stack.settings, purchase_order(f"PO-{uuid4().hex[:8]}", sku, 3, days=7))
    await stack.wait_quiescent()
    assert [i["promised_date"] for i in await book_of(allocator_api, sku)] == [day(7), None]
    before = len(await eta_changes_of(stack, sku))

    await publish(producer, stack.settings, cancel(first))
    # Cancelled before its StockShort arrives: the StockShort must not book it.
    ghost = short(sku, 4, minute=-10)
    await publish(producer, stack.settings, cancel(ghost))
    await stack.wait_quiescent()
    await publish(producer, stack.settings, ghost)
    await stack.wait_quiescent()

    items = await book_of(allocator_api, sku)
    assert [(i["position"], i["order_id"], i["promised_date"]) for i in items] == [(1, str(second.order_id), day(7))]
    assert (await eta_changes_of(stack, sku))[before:] == [(str(second.order_id), 1, None, day(7), "queue_moved")]

    await publish(producer, stack.settings, receipt(f"RCV-{uuid4().hex[:8]}", (sku, 10)))
    await stack.wait_quiescent()
    assert [(order_id, qty) for order_id, qty, _, _ in await allocations_of(stack, sku)] == [(str(second.order_id), 2)]


async def test_the_tier_policy_set_over_http_serves_vip_first_and_redates_the_moved_lines(
    stack: Devstack, producer: AIOKafkaProducer, allocator_api: httpx.AsyncClient
) -> None:
    sku = new_sku()
    standard, vip = short(sku, 3, minute=0, tier="standard"), short(sku, 3, minute=5, tier="vip")
    await publish(producer, stack.settings, standard)
    await publish(producer, stack.settings, vip)
    await publish(producer, stack.settings, purchase_order(f"PO-{uuid4().hex[:8]}", sku, 3, days=5))
    await stack.wait_quiescent()
    before = len(await eta_changes_of(stack, sku))

    response = await allocator_api.put(f"/v1/policies/skus/{sku}", json={"policy": "tier"})
    assert response.status_code == 200, response.text
    assert response.json() == {"scope": sku, "policy": "tier", "lines_redated": 2}
    await stack.wait_quiescent()

    assert (await allocator_api.get("/v1/policies")).json()["skus"][sku] == "tier"
    items = await book_of(allocator_api, sku)
    assert [(i["order_id"], i["policy"], i["promised_date"]) for i in items] == [
        (str(vip.order_id), "tier", day(5)),
        (str(standard.order_id), "tier", None),
    ]
    assert sorted((await eta_changes_of(stack, sku))[before:]) == sorted(
        [(str(vip.order_id), 1, None, day(5), "priority_changed"), (str(standard.order_id), 1, day(5), None, "priority_changed")]
    )
    again = await allocator_api.put(f"/v1/policies/skus/{sku}", json={"policy": "tier"})
    assert again.json()["lines_redated"] == 0

    await publish(producer, stack.settings, receipt(f"RCV-{uuid4().hex[:8]}", (sku, 3)))
    await stack.wait_quiescent()
    assert [(order_id, qty) for order_id, qty, _, _ in await allocations_of(stack, sku)] == [(str(vip.order_id), 3)]

    assert (await allocator_api.delete(f"/v1/policies/skus/{sku}")).status_code == 204
    assert (await allocator_api.delete(f"/v1/policies/skus/{sku}")).status_code == 404
    assert sku not in (await allocator_api.get("/v1/policies")).json()["skus"]


async def test_the_global_policy_can_be_read_and_set(allocator_api: httpx.AsyncClient) -> None:
    assert (await allocator_api.get("/v1/policies")).json()["global"] == "fifo"
    try:
        response = await allocator_api.put("/v1/policies/global", json={"policy": "due_date"})
        assert response.status_code == 200, response.text
        assert response.json()["policy"] == "due_date"
        assert (await allocator_api.get("/v1/policies")).json()["global"] == "due_date"
    finally:
        restored = await allocator_api.put("/v1/policies/global", json={"policy": "fifo"})
    assert restored.status_code == 200
    assert (await allocator_api.get("/v1/policies")).json()["global"] == "fifo"


async def test_stats_count_lines_units_age_fill_time_and_backorder_rate(
    stack: Devstack, producer: AIOKafkaProducer, allocator_api: httpx.AsyncClient
) -> None:
    sku = new_sku()
    lines = [short(sku, qty, minute=minute) for qty, minute in ((2, 0), (3, 1), (4, 2))]
    for line in lines:
        await publish(producer, stack.settings, line)
    for n in range(6):  # six lines ordered, three of them backordered
        order_id = lines[n].order_id if n < 3 else uuid4()
        placed = OrderPlaced(
            order_id=order_id,
            external_id=uuid4().hex,
            channel="web",
            customer=Customer(id=f"c-{n}", email=f"c{n}@example.com"),
            partial_allowed=True,
            placed_at=START,
            lines=(OrderedLine(line_no=1, sku=sku, qty=1),),
        )
        await publish(producer, stack.settings, placed)
    await stack.wait_quiescent()
    await publish(producer, stack.settings, receipt(f"RCV-{uuid4().hex[:8]}", (sku, 5)))  # fills the first two
    await stack.wait_quiescent()

    response = await allocator_api.get("/v1/backorders/stats", params={"sku": sku})

    assert response.status_code == 200
    [stats] = response.json()["items"]
    assert (stats["sku"], stats["lines_waiting"], stats["units_waiting"]) == (sku, 1, 4)
    assert (stats["lines_ordered"], stats["lines_backordered"], stats["backorder_rate"]) == (6, 3, 0.5)
    assert stats["oldest_age_seconds"] >= 2 * 3600 - 2 * 60
    assert 0 <= stats["fill_time_p50_seconds"] <= stats["fill_time_p90_seconds"]
    everything = (await allocator_api.get("/v1/backorders/stats")).json()["items"]
    assert sku in {item["sku"] for item in everything}


async def test_bad_input_on_every_endpoint_gets_a_problem_response(allocator_api: httpx.AsyncClient) -> None:
    json_type = {"content-type": "application/json"}
    bad_requests = [
        ("GET", "/v1/backorders", {"params": {"sku": "no spaces!"}}, 422),
        ("GET", "/v1/backorders", {"params": {"limit": 0}}, 422),
        ("GET", "/v1/backorders", {"params": {"limit": "many"}}, 422),
        ("GET", "/v1/backorders", {"params": {"offset": -1}}, 422),
        ("GET", "/v1/backorders/stats", {"params": {"sku": "x" * 65}}, 422),
        ("PUT", "/v1/policies/global", {"json": {"policy": "loudest_first"}}, 422),
        ("PUT", "/v1/policies/global", {"json": {}}, 422),
        ("PUT", "/v1/policies/global", {"json": {"policy": "fifo", "extra": 1}}, 422),
        ("PUT", "/v1/policies/global", {"json": ["fifo"]}, 422),
        ("PUT", "/v1/policies/global", {"content": b"{not json", "headers": json_type}, 422),
        ("PUT", "/v1/policies/global", {"content": b"x" * (2 * 1024 * 1024), "headers": json_type}, 413),
        ("PUT", "/v1/policies/skus/bad%20sku", {"json": {"policy": "tier"}}, 422),
        ("PUT", "/v1/policies/skus/global", {"json": {"policy": "tier"}}, 422),
        ("PUT", f"/v1/policies/skus/{new_sku()}", {"json": {"policy": None}}, 422),
        ("DELETE", f"/v1/policies/skus/{new_sku()}", {}, 404),
        ("DELETE", "/v1/policies/skus/bad%20sku", {}, 422),
    ]
    for method, path, kwargs, status in bad_requests:
        response = await allocator_api.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == status, (method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), (method, path)
        assert response.json()["detail"], (method, path)
        if status == 422:  # which field, and why
            assert all(e["field"] and e["reason"] for e in response.json()["errors"]), (method, path, response.text)
    assert (await allocator_api.get("/v1/policies")).json()["global"] == "fifo"


async def test_bad_events_are_dead_lettered_with_the_reason_and_the_partition_flows_on(
    stack: Devstack, producer: AIOKafkaProducer, allocator_api: httpx.AsyncClient
) -> None:
    sku = new_sku()
    po = f"PO-{uuid4().hex[:8]}"
    negative = purchase_order(po, sku, -3, days=5)
    naive = short(sku, 1, minute=0).model_copy(update={"ordered_at": datetime(2024, 1, 1, 9, 0)})
    await publish(producer, stack.settings, negative, key=sku)
    await publish(producer, stack.settings, naive)
    await publish(producer, stack.settings, raw=b"{not an envelope", key=sku, topic=stack.settings.topic(Stream.STOCK))
    good = short(sku, 2, minute=1)
    await publish(producer, stack.settings, good)
    await stack.wait_quiescent()

    assert [i["order_id"] for i in await book_of(allocator_api, sku)] == [str(good.order_id)]
    dead = [m for m in await read_topic(stack.settings, f"{stack.settings.topic(Stream.STOCK)}.dlq") if m.key == sku]
    reasons = [m.headers["dlq.reason"] for m in dead if m.headers.get("dlq.consumer") == "allocator"]
    assert any("negative" in reason and po in reason for reason in reasons)
    assert any("tz-aware" in reason for reason in reasons)
    assert any(reason.startswith("unparseable") for reason in reasons)
