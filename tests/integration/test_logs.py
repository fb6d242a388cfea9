"""The session's services log JSON lines (the default outside `make run`), each naming its service,
records about an order name it, and no customer's email address is ever written."""

from __future__ import annotations

import json
from uuid import uuid4

from e2e.kit import new_customer, new_sku, place_order, set_policy
from support import publish

from shared.events import StockReserved
from shared.settings import SERVICES


def log_lines(stack, service: str) -> list[str]:
    return (stack.root / "logs" / f"{service}.log").read_text(errors="replace").splitlines()


async def test_service_logs_are_json_about_orders_and_free_of_email_addresses(stack, orders_api, inventory_api, producer) -> None:
    customer = new_customer()
    sku = new_sku("LOG")
    await set_policy(inventory_api, sku)
    await place_order(orders_api, customer, [(sku, 1)])
    # An event for an order orders never took: told, with the order named. (Other tests make such
    # lines too, and a repeated line is rate-limited, so any line naming an order will do.)
    reserved = StockReserved(order_id=uuid4(), line_no=1, sku=sku, qty=1)
    await publish(producer, stack.settings, reserved, producer_name="inventory")
    await stack.wait_quiescent()

    entries: dict[str, list[dict]] = {}
    for service in SERVICES:
        lines = log_lines(stack, service)
        assert lines, f"{service} logged nothing"
        entries[service] = [json.loads(line) for line in lines if line.strip()]  # every line is one JSON object
        assert {entry["service"] for entry in entries[service]} == {service}
        assert all(customer["email"] not in line for line in lines), f"{service} logged a customer's email address"
    assert any("order_id" in entry for entry in entries["orders"]), "no orders record names its order"
