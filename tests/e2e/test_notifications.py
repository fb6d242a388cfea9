"""End to end, through all services: what customers receive. One confirmation listing every line
with its date, one delay notice with one consolation for a slip past the threshold, messages for
the receipt and the shipment, and the still-waiting update once per period and not after another
message."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from uuid import uuid4

import httpx
from babel.dates import format_skeleton
from e2e.kit import count_stock, new_sku, set_policy
from receivers import ReceivedMail, RecordingSmtp
from support import eventually


def customer(locale: str = "en-GB") -> dict[str, str]:
    token = uuid4().hex[:10]
    return {"id": f"cust-{token}", "email": f"c-{token}@example.com", "locale": locale}


async def place(orders_api: httpx.AsyncClient, who: dict[str, str], lines: list[tuple[str, int]], channel: str = "web") -> str:
    body = {
        "external_id": f"SO-{uuid4().hex[:8]}", "channel": channel, "customer": who,
        "lines": [{"sku": sku, "qty": qty} for sku, qty in lines], "shipping": {"partial_allowed": True},
    }
    placed = await orders_api.post("/v1/orders", json=body)
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["id"]
    return order_id


async def purchase_order(inventory_api: httpx.AsyncClient, sku: str, qty: int, expected: date) -> str:
    po_id = f"PO-{uuid4().hex[:8]}"
    created = await inventory_api.post("/v1/purchase-orders", json={
        "id": po_id, "supplier": "ACME", "lines": [{"sku": sku, "qty": qty}], "expected_at": expected.isoformat()})
    assert created.status_code == 201, created.text
    return po_id


async def mails_settle(smtp: RecordingSmtp, address: str, count: int, quiet: float = 3.0) -> list[ReceivedMail]:
    """Wait for `count` messages, then make sure no further one follows within `quiet` seconds."""
    async def arrived() -> bool:
        return len(smtp.to(address)) >= count

    await eventually(arrived, timeout=30)
    await asyncio.sleep(quiet)
    return smtp.to(address)


def day(value: date) -> str:
    return format_skeleton("dMMMM" if value.year == date.today().year else "yMMMMd", value, locale="en_GB")


async def test_a_backorder_is_confirmed_once_with_every_line_and_date_then_a_slip_apologises_once(
    stack, orders_api, inventory_api, notifier_api, smtp_server
) -> None:
    in_stock, waiting_a, waiting_b = new_sku("N1"), new_sku("N2"), new_sku("N3")
    for sku in (in_stock, waiting_a, waiting_b):
        await set_policy(inventory_api, sku, supplier="ACME")
    await count_stock(inventory_api, in_stock, 5)
    date_a, date_b = date.today() + timedelta(days=12), date.today() + timedelta(days=20)
    po_a = await purchase_order(inventory_api, waiting_a, 10, date_a)
    await purchase_order(inventory_api, waiting_b, 10, date_b)
    await stack.wait_quiescent()

    who = customer()
    order_id = await place(orders_api, who, [(in_stock, 2), (waiting_a, 3), (waiting_b, 1)])

    mails = await mails_settle(smtp_server, who["email"], 1)
    assert len(mails) == 1, [m.subject for m in mails]
    confirmation = mails[0].text()
    for sku in (in_stock, waiting_a, waiting_b):
        assert sku in confirmation
    assert day(date_a) in confirmation and day(date_b) in confirmation
    listed = (await notifier_api.get("/v1/notifications", params={"order_id": order_id})).json()["items"]
    assert [(n["kind"], n["channel"], n["status"], n["recipient"]) for n in listed] == [
        ("confirmation", "email", "sent", who["id"])
    ]

    # The purchase order slips 10 days past the first promise (threshold 7): one delay notice, with
    # the apology, both dates and one consolation; a second slip apologises again but offers nothing new.
    slipped = date_a + timedelta(days=10)
    patched = await inventory_api.patch(f"/v1/purchase-orders/{po_a}", json={"expected_at": slipped.isoformat()})
    assert patched.status_code == 200, patched.text
    mails = await mails_settle(smtp_server, who["email"], 2)
    assert len(mails) == 2, [m.subject for m in mails]
    delay = mails[1].text()
    assert day(date_a) in delay and day(slipped) in delay and "SORRY-" in delay
    code = next(word for word in delay.split() if word.startswith("SORRY-")).strip(".,;:)")

    again = slipped + timedelta(days=3)
    patched = await inventory_api.patch(f"/v1/purchase-orders/{po_a}", json={"expected_at": again.isoformat()})
    assert patched.status_code == 200, patched.text
    mails = await mails_settle(smtp_server, who["email"], 3)
    assert len(mails) == 3
    assert day(again) in mails[2].text() and "SORRY-" not in mails[2].text() and code not in mails[2].text()
    assert len({m.message_id for m in mails}) == 3
