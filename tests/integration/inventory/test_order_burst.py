"""A flash sale's burst of placed orders against the live stack: inventory reserves a run of them
at once, yet exactly as it would one at a time, in the order they were placed."""

from __future__ import annotations

from typing import Any

from integration.inventory.inventory_kit import InventoryKit, inv_fixture  # noqa: F401 (the inv fixture)
from support import read_topic


async def test_a_burst_for_a_scarce_sku_serves_the_first_orders_and_oversells_nothing(inv: InventoryKit, db: Any) -> None:
    sku = await inv.sku(stock=7)
    orders = [inv.order((sku, 2)) for _ in range(30)]
    # Two orders placed twice (another event id each time): once in the middle, once at the end.
    burst = [*orders[:10], orders[1], *orders[10:], orders[0]]
    envelopes = await inv.publish_burst(burst, key=inv.new_id("SALE"))  # one partition: this order
    await inv.settle()

    async with db("inventory") as conn:
        rows = await conn.fetch("SELECT order_id, reserved, waiting, short_seq FROM line_stock WHERE sku = $1", sku)
    lines = {row["order_id"]: row for row in rows}
    assert len(lines) == 30
    assert [(lines[o.order_id]["reserved"], lines[o.order_id]["waiting"]) for o in orders] == (
        [(2, 0)] * 3 + [(1, 1)] + [(0, 2)] * 26
    ), "the first orders got the stock, each once"
    assert [lines[o.order_id]["short_seq"] for o in orders[3:]] == list(range(1, 28)), "shortfalls numbered as placed"
    stock = await inv.stock(sku)
    assert (stock["available"], stock["reserved"], stock["backordered"]) == (0, 7, 53)

    reserved = await inv.on_stock("StockReserved", sku=sku)
    short = await inv.on_stock("StockShort", sku=sku)
    assert sum(r.payload["qty"] for r in reserved) == 7, "never more reserved than came in"
    assert len(short) == 27
    first_copy: dict[str, str] = {}
    for envelope, order in zip(envelopes, burst, strict=True):
        first_copy.setdefault(str(order.order_id), str(envelope.event_id))
    for answer in reserved + short:
        order_id = answer.payload["order_id"]
        assert (answer.correlation_id, answer.causation_id) == (order_id, first_copy[order_id]), "caused by its own order"


async def test_an_order_repeating_a_line_number_in_a_burst_is_dead_lettered_alone(inv: InventoryKit) -> None:
    sku = await inv.sku(stock=3)
    good = [inv.order((sku, 1)) for _ in range(3)]
    twice = inv.order((sku, 1), (sku, 1))
    bad = twice.model_copy(update={"lines": tuple(line.model_copy(update={"line_no": 1}) for line in twice.lines)})
    key = inv.new_id("SALE")
    await inv.publish_burst([good[0], bad, good[1], good[2]], key=key)
    await inv.settle()

    settings = inv.stack.settings
    dead = await read_topic(settings, f"{settings.topic_orders}.dlq")
    parked = [m for m in dead if m.key == key and m.headers["dlq.consumer"] == "inventory"]
    assert [m.envelope().payload["order_id"] for m in parked] == [str(bad.order_id)]
    assert "repeats a line number" in parked[0].headers["dlq.reason"]
    stock = await inv.stock(sku)
    assert (stock["available"], stock["reserved"], stock["backordered"]) == (0, 3, 0), "the good orders around it reserved"
