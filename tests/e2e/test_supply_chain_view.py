"""An order shows where each waiting line stands in the supply chain: its place in the book, the
purchase orders on their way to it with the supplier's word on them, and every date it was
promised. Read through orders, which asks the allocator (the book's owner) when the order is read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from babel.dates import format_skeleton
from e2e.kit import new_customer, new_sku, place_order, purchase_order, set_policy
from support import eventually

from shared.tokens import Claim, sign


async def line_of(orders_api, order_id: str) -> dict:
    order = (await orders_api.get(f"/v1/orders/{order_id}")).json()
    assert order["book_unavailable"] is None, order
    return order["lines"][0]


async def test_a_waiting_line_shows_its_place_its_purchase_orders_and_its_promises(
    stack, orders_api, inventory_api
) -> None:
    sku = new_sku("TRK")
    await set_policy(inventory_api, sku, supplier="ACME")
    today = datetime.now(UTC).date()
    first_date, second_date = today + timedelta(days=10), today + timedelta(days=20)
    po_a = await purchase_order(inventory_api, sku, 3, first_date)
    shipped = await inventory_api.post(f"/v1/purchase-orders/{po_a}/ship", json={"carrier": "DHL", "tracking": "JD0001"})
    assert shipped.status_code == 200, shipped.text
    first = await place_order(orders_api, new_customer(), [(sku, 2)])
    second = await place_order(orders_api, new_customer(), [(sku, 2)])
    await stack.wait_quiescent()

    line = await line_of(orders_api, second)
    assert line["state"] == "backordered" and line["expected_date"] is None  # PO A covers only one of its units
    assert line["queue"] == {"position": 2, "lines_waiting": 2, "units_waiting": 4, "units_ahead": 2}
    assert [(po["id"], po["supplier_state"]) for po in line["covering_purchase_orders"]] == [(po_a, "shipped")]

    po_b = await purchase_order(inventory_api, sku, 5, second_date)  # now both reach it: the later date
    await stack.wait_quiescent()
    line = await line_of(orders_api, second)
    assert line["expected_date"] == second_date.isoformat()
    covering = [(po["id"], po["supplier_state"], po["expected_at"]) for po in line["covering_purchase_orders"]]
    assert covering == [(po_a, "shipped", first_date.isoformat()), (po_b, "open", second_date.isoformat())]
    history = [(p["promised_date"], p["reason"]) for p in line["promised_dates"]]
    assert history == [(None, "booked"), (second_date.isoformat(), "purchase_order_changed")], history

    ahead = await line_of(orders_api, first)
    assert ahead["queue"]["position"] == 1 and ahead["queue"]["units_ahead"] == 0
    assert [po["id"] for po in ahead["covering_purchase_orders"]] == [po_a]
    assert [p["promised_date"] for p in ahead["promised_dates"]] == [first_date.isoformat()]


async def test_the_customer_follows_the_order_on_a_signed_page_in_their_language(
    stack, orders_api, inventory_api, smtp_server
) -> None:
    sku = new_sku("PAGE")
    await set_policy(inventory_api, sku, supplier="ACME")
    expected = datetime.now(UTC).date() + timedelta(days=10)
    po = await purchase_order(inventory_api, sku, 5, expected)
    assert (await inventory_api.post(f"/v1/purchase-orders/{po}/ship", json={"carrier": "DHL"})).status_code == 200
    customer = new_customer(locale="hu-HU")
    order_id = await place_order(orders_api, customer, [(sku, 2)])
    await stack.wait_quiescent()

    url = (await orders_api.get(f"/v1/orders/{order_id}")).json()["tracking_url"]
    async with httpx.AsyncClient(timeout=10) as browser:  # no API key: the signed link is enough
        page = await browser.get(url)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'lang="hu"' in page.text and sku in page.text
        assert format_skeleton("MMMMd", expected, locale="hu") in page.text  # the purchase order's date, in Hungarian
        assert "a beszállító már feladta" in page.text  # the supplier's word on it
        tampered = await browser.get(url[:-1] + ("A" if url[-1] != "A" else "B"))
        assert tampered.status_code == 403 and "text/html" in tampered.headers["content-type"]
        expired = sign(Claim("track", order_id, datetime.now(UTC) - timedelta(minutes=1)), stack.settings.link_signing_key)
        gone = await browser.get(url.rsplit("/", 1)[0] + "/" + expired, headers={"accept-language": "da-DK"})
        assert gone.status_code == 410 and "udløbet" in gone.text  # told in the reader's language

    async def mailed_with_the_link() -> bool:
        return any("/track/" in mail.text() for mail in smtp_server.to(customer["email"]))

    assert await eventually(mailed_with_the_link, timeout=20)
