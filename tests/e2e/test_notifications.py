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
from e2e.kit import count_stock, new_customer, new_sku, place_order, purchase_order, set_policy
from receivers import ReceivedMail, RecordingSmtp
from support import eventually


async def mails_settle(smtp: RecordingSmtp, address: str, count: int, quiet: float = 1.2) -> list[ReceivedMail]:
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

    who = new_customer()
    order_id = await place_order(orders_api, who, [(in_stock, 2), (waiting_a, 3), (waiting_b, 1)])

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


async def shipments_of(orders_api: httpx.AsyncClient, order_id: str) -> list[dict]:
    shipments: list[dict] = (await orders_api.get(f"/v1/orders/{order_id}/shipments")).json()["shipments"]
    return shipments


async def confirm_shipments(orders_api: httpx.AsyncClient, order_id: str) -> None:
    for shipment in await shipments_of(orders_api, order_id):
        if shipment["status"] == "requested":
            done = await orders_api.post(f"/v1/orders/{order_id}/shipments", json={"shipment_id": shipment["id"]})
            assert done.status_code in (200, 201), done.text


async def test_the_receipt_and_the_shipments_are_told_with_what_still_waits(
    stack, orders_api, inventory_api, notifier_api, smtp_server
) -> None:
    in_stock, waiting = new_sku("R1"), new_sku("R2")
    for sku in (in_stock, waiting):
        await set_policy(inventory_api, sku, supplier="ACME")
    await count_stock(inventory_api, in_stock, 3)
    expected = date.today() + timedelta(days=15)
    await purchase_order(inventory_api, waiting, 5, expected)
    await stack.wait_quiescent()
    who = new_customer()
    order_id = await place_order(orders_api, who, [(in_stock, 1), (waiting, 2)])
    await mails_settle(smtp_server, who["email"], 1, quiet=0.5)

    await confirm_shipments(orders_api, order_id)  # the line in stock leaves
    mails = await mails_settle(smtp_server, who["email"], 2)
    shipped = mails[1].text()
    assert "shipped" in mails[1].subject.lower() and in_stock in shipped
    assert waiting in shipped and day(expected) in shipped  # what still waits, and until when

    receipt = await inventory_api.post("/v1/receipts", json={
        "receipt_id": f"RCV-{uuid4().hex[:8]}", "warehouse": "DC1", "lines": [{"sku": waiting, "qty": 1}]})
    assert receipt.status_code == 201, receipt.text
    mails = await mails_settle(smtp_server, who["email"], 3)
    ready = mails[2].text()
    assert "ready" in mails[2].subject.lower() or "on its way" in mails[2].subject.lower(), mails[2].subject
    assert ready.count(waiting) >= 2  # one unit ready, one still waiting

    await confirm_shipments(orders_api, order_id)
    mails = await mails_settle(smtp_server, who["email"], 4)
    assert len(mails) == 4
    kinds = [n["kind"] for n in (await notifier_api.get("/v1/notifications", params={"order_id": order_id})).json()["items"]]
    assert kinds == ["shipped", "ready", "shipped", "confirmation"]


async def test_still_waiting_goes_once_per_period_never_right_after_another_message_and_stops_when_served(
    stack, orders_api, inventory_api, notifier_api, smtp_server, short_still_waiting
) -> None:
    period = short_still_waiting
    sku = new_sku("SW")
    await set_policy(inventory_api, sku, supplier="ACME")
    who = new_customer()
    order_id = await place_order(orders_api, who, [(sku, 1)])
    await mails_settle(smtp_server, who["email"], 1, quiet=0)

    await asyncio.sleep(period / 2)  # mid-period, a date becomes known: good news, and the clock restarts
    await purchase_order(inventory_api, sku, 5, date.today() + timedelta(days=9))
    mails = await mails_settle(smtp_server, who["email"], 2, quiet=0)
    good_news_at = mails[1].at

    mails = await mails_settle(smtp_server, who["email"], 3, quiet=0)
    assert mails[2].at - good_news_at >= period - 0.5, "an update came within a period of another message"
    assert "9" in mails[2].text() and "days" in mails[2].text()  # 9 days to the promised date
    mails = await mails_settle(smtp_server, who["email"], 4, quiet=0)
    assert mails[3].at - mails[2].at >= period - 0.5

    cancel = await orders_api.post(f"/v1/orders/{order_id}/cancel", json={"reason": "customer_request"})
    assert cancel.status_code == 200, cancel.text
    mails = await mails_settle(smtp_server, who["email"], 5, quiet=period + 1)
    assert len(mails) == 5, "the updates stop when nothing waits"
    kinds = [n["kind"] for n in (await notifier_api.get("/v1/notifications", params={"order_id": order_id})).json()["items"]]
    assert kinds == ["cancelled", "still_waiting", "still_waiting", "good_news", "confirmation"]


async def test_preferences_switch_off_good_news_but_never_a_delay(
    stack, orders_api, inventory_api, notifier_api, smtp_server
) -> None:
    sku = new_sku("PF")
    await set_policy(inventory_api, sku, supplier="ACME")
    who = new_customer(locale="en-US")
    prefs = await notifier_api.put(f"/v1/customers/{who['id']}/preferences",
                                   json={"language": "de", "good_news": False, "still_waiting": False})
    assert prefs.status_code == 200, prefs.text
    first = date.today() + timedelta(days=30)
    po = await purchase_order(inventory_api, sku, 5, first)
    await stack.wait_quiescent()
    await place_order(orders_api, who, [(sku, 1)])
    mails = await mails_settle(smtp_server, who["email"], 1, quiet=0.5)
    assert "Bestellung" in mails[0].subject  # the language the customer chose, not their locale's

    sooner = (first - timedelta(days=10)).isoformat()
    earlier = await inventory_api.patch(f"/v1/purchase-orders/{po}", json={"expected_at": sooner})
    assert earlier.status_code == 200
    await asyncio.sleep(2.5)  # the window (1 s) and a delivery, had anything been composed
    assert len(smtp_server.to(who["email"])) == 1, "good news was switched off"
    later = await inventory_api.patch(f"/v1/purchase-orders/{po}", json={"expected_at": (first + timedelta(days=5)).isoformat()})
    assert later.status_code == 200
    mails = await mails_settle(smtp_server, who["email"], 2)
    assert len(mails) == 2 and "Verzögerung" in mails[1].subject
