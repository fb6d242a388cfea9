"""The notifier against a real SMTP server and a real webhook receiver (each signature verified with
the `standardwebhooks` library): coalescing, once-only sending across redelivery and a restart,
retries of transient failures, none of permanent ones, and a slow endpoint that holds up nobody else."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
from e2e.kit import count_stock, new_customer, new_sku, place_order, set_policy
from receivers import RecordingSmtp, WebhookReceiver
from standardwebhooks import Webhook
from support import events_of, eventually, publish

from shared.events import EVENT_TYPES

WINDOW_S = 1.0  # NOTIFY_COALESCE_WINDOW_S in the session stack (tests/conftest.py)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


async def stocked_sku(stack: Any, inventory_api: httpx.AsyncClient, units: int = 50) -> str:
    """A SKU with units on the shelf. A count goes to the backorder book first and reaches the shelf
    a moment later: an order placed in between waits and is served ("ready"), not reserved."""
    sku = new_sku("NT")
    await set_policy(inventory_api, sku, supplier="ACME")
    await count_stock(inventory_api, sku, units)
    await stack.wait_quiescent()
    return sku


async def register(notifier_api: httpx.AsyncClient, receiver: WebhookReceiver, send_email: bool = True) -> str:
    channel = f"shop-{uuid4().hex[:8]}"
    secret = new_secret()
    receiver.register(channel, secret)
    put = await notifier_api.put(
        f"/v1/channels/{channel}", json={"webhook_url": receiver.url(channel), "webhook_secret": secret, "send_email": send_email}
    )
    assert put.status_code == 200, put.text
    assert put.json()["has_webhook_secret"] is True and "webhook_secret" not in put.json()
    return channel


async def notifications(notifier_api: httpx.AsyncClient, order_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await notifier_api.get("/v1/notifications", params={"order_id": order_id, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def until_settled(notifier_api: httpx.AsyncClient, order_id: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    """`count` notifications of the order, none of them still pending or being sent."""

    async def settled() -> list[dict[str, Any]] | None:
        items = await notifications(notifier_api, order_id)
        done = len(items) >= count and all(n["status"] in ("sent", "failed") for n in items)
        return items if done else None

    items = await eventually(settled, timeout=timeout)
    assert items is not None, await notifications(notifier_api, order_id)
    return items


async def confirmed(smtp: RecordingSmtp, notifier_api: httpx.AsyncClient, order_id: str, who: dict[str, str]) -> None:
    await until_settled(notifier_api, order_id, 1)
    assert [m.subject for m in smtp.to(who["email"])] and "confirmed" in smtp.to(who["email"])[0].subject


async def test_two_lines_cancelled_within_the_window_become_one_message(
    stack, orders_api, inventory_api, notifier_api, smtp_server
) -> None:
    sku = await stocked_sku(stack, inventory_api)
    who = new_customer("en")
    order_id = await place_order(orders_api, who, [(sku, 1), (sku, 2)])
    await confirmed(smtp_server, notifier_api, order_id, who)

    # One request, two LineCancelled events (one per line), a moment apart at the notifier.
    cancel = await orders_api.post(f"/v1/orders/{order_id}/cancel", json={"reason": "customer_request"})
    assert cancel.status_code == 200, cancel.text
    items = await until_settled(notifier_api, order_id, 2)
    await asyncio.sleep(WINDOW_S + 1)

    assert [n["kind"] for n in await notifications(notifier_api, order_id)] == ["cancelled", "confirmation"]
    mails = smtp_server.to(who["email"])
    assert len(mails) == 2
    assert "cancel" in mails[1].subject.lower()
    assert mails[1].text().count(sku) == 2  # both lines in the one message
    assert items[0]["status"] == "sent" and items[0]["attempts"] == 1


async def test_a_redelivered_event_sends_nothing_again(
    stack, producer, orders_api, inventory_api, notifier_api, smtp_server
) -> None:
    sku = await stocked_sku(stack, inventory_api)
    who = new_customer("en")
    order_id = await place_order(orders_api, who, [(sku, 1), (sku, 1)])
    await confirmed(smtp_server, notifier_api, order_id, who)
    cancel = await orders_api.post(f"/v1/orders/{order_id}/lines/1/cancel", json={"reason": "customer_request"})
    assert cancel.status_code == 200
    await until_settled(notifier_api, order_id, 2)

    # The same envelopes again, same event ids: as a broker redelivers them, or a replay.
    for event_type in ("OrderPlaced", "LineCancelled"):
        for envelope in await events_of(stack.settings, "orders", event_type, order_id=order_id):
            await publish(producer, stack.settings, EVENT_TYPES[event_type].model_validate(envelope.payload),
                          event_id=envelope.event_id)
    for envelope in await events_of(stack.settings, "stock", "StockReserved", order_id=order_id):
        await publish(producer, stack.settings, EVENT_TYPES["StockReserved"].model_validate(envelope.payload),
                      event_id=envelope.event_id)
    await stack.wait_quiescent()
    await asyncio.sleep(WINDOW_S + 1.5)

    assert [n["kind"] for n in await notifications(notifier_api, order_id)] == ["cancelled", "confirmation"]
    assert len(smtp_server.to(who["email"])) == 2


async def test_a_restart_inside_the_window_sends_the_message_once(
    stack, db, orders_api, inventory_api, notifier_api, smtp_server
) -> None:
    sku = await stocked_sku(stack, inventory_api)
    who = new_customer("en")
    order_id = await place_order(orders_api, who, [(sku, 1), (sku, 1)])
    await confirmed(smtp_server, notifier_api, order_id, who)

    cancel = await orders_api.post(f"/v1/orders/{order_id}/lines/2/cancel", json={"reason": "customer_request"})
    assert cancel.status_code == 200

    async def noticed() -> bool:
        async with db("notifier") as connection:
            return bool(await connection.fetchval("SELECT count(*) FROM notice WHERE order_id = $1", UUID(order_id)))

    assert await eventually(noticed, timeout=10, interval=0.02), "the cancel never reached the notifier"
    notifier = stack.services["notifier"]
    started = time.monotonic()
    notifier.process.kill()  # inside the window: the moment is only in the database
    notifier.process.wait()
    stack.start_service("notifier", notifier.port)
    await stack.wait_ready()
    assert time.monotonic() - started < 30

    await until_settled(notifier_api, order_id, 2)
    await asyncio.sleep(WINDOW_S + 1)
    assert [n["kind"] for n in await notifications(notifier_api, order_id)] == ["cancelled", "confirmation"]
    assert len(smtp_server.to(who["email"])) == 2


async def test_a_transient_failure_is_retried_with_the_same_message_id_until_it_goes_through(
    stack, db, orders_api, inventory_api, notifier_api, smtp_server, webhook_receiver
) -> None:
    sku = await stocked_sku(stack, inventory_api)
    channel = await register(notifier_api, webhook_receiver)
    webhook_receiver.script(channel, 503, 429)
    who = new_customer("en")
    smtp_server.refuse(who["email"], 451)
    order_id = await place_order(orders_api, who, [(sku, 1)], channel=channel)

    items = await until_settled(notifier_api, order_id, 2)
    by_channel = {n["channel"]: n for n in items}
    assert by_channel["webhook"]["status"] == "sent" and by_channel["webhook"]["attempts"] == 3
    assert by_channel["email"]["status"] == "sent" and by_channel["email"]["attempts"] == 2

    hooks = webhook_receiver.of(channel)
    assert [h.status for h in hooks] == [503, 429, 200]
    assert all(h.verified for h in hooks), "every attempt carries a valid Standard Webhooks signature"
    assert len({h.headers["webhook-id"] for h in hooks}) == 1  # the same message, so the platform can drop repeats
    payload = hooks[-1].payload
    assert payload is not None and payload["type"] == "order.confirmation"
    assert payload["data"]["order_id"] == order_id and payload["data"]["customer_id"] == who["id"]
    assert who["email"] not in hooks[-1].body.decode()  # the address stays in the notifier

    assert (who["email"], 451) in smtp_server.refused
    assert len(smtp_server.to(who["email"])) == 1
    detail = (await notifier_api.get(f"/v1/notifications/{by_channel['webhook']['id']}")).json()
    assert [(a["attempt"], a["outcome"]) for a in detail["attempt_log"]] == [(1, "transient"), (2, "transient"), (3, "sent")]
    assert "HTTP 503" in (detail["attempt_log"][0]["error"] or "")

    async with db("notifier") as conn:  # what it emitted (the permanent-failure test reads the topic itself)
        rows = await conn.fetch(
            "SELECT envelope FROM outbox WHERE event_type = 'NotificationSent' AND envelope->'payload'->>'order_id' = $1",
            order_id)
    sent = [json.loads(row["envelope"]) for row in rows]
    assert sorted((e["payload"]["channel"], e["payload"]["attempts"]) for e in sent) == [("email", 2), ("webhook", 3)]
    assert all(who["email"] not in json.dumps(e) for e in sent)


async def test_a_permanent_refusal_is_not_retried_and_is_reported(
    stack, orders_api, inventory_api, notifier_api, smtp_server, webhook_receiver
) -> None:
    sku = await stocked_sku(stack, inventory_api)
    channel = await register(notifier_api, webhook_receiver)
    webhook_receiver.script(channel, 410)
    who = new_customer("en")
    smtp_server.refuse(who["email"], 550)
    order_id = await place_order(orders_api, who, [(sku, 1)], channel=channel)

    items = await until_settled(notifier_api, order_id, 2)
    assert sorted((n["channel"], n["status"], n["attempts"]) for n in items) == [("email", "failed", 1), ("webhook", "failed", 1)]
    assert all(n["last_error"] for n in items)
    await asyncio.sleep(1.5)  # well past the test backoff: still one attempt each
    assert len(webhook_receiver.of(channel)) == 1
    failed = await eventually(lambda: events_of(stack.settings, "notifications", "NotificationFailed", order_id=order_id))
    assert sorted((e.payload["channel"], e.payload["permanent"]) for e in failed) == [("email", True), ("webhook", True)]
    assert all(who["email"] not in e.model_dump_json() for e in failed), "the server named the address; the event must not"
    assert who["email"] not in str(items) and who["id"] in str(items)
    listed = await notifier_api.get("/v1/notifications", params={"order_id": order_id, "status": "failed"})
    assert len(listed.json()["items"]) == 2

    resent = await notifier_api.post(f"/v1/notifications/{items[0]['id']}/resend")
    assert resent.status_code == 202, resent.text
    assert resent.json()["resend_of"] == items[0]["id"] and resent.json()["id"] != items[0]["id"]
    await until_settled(notifier_api, order_id, 3)


async def test_a_slow_endpoint_does_not_hold_up_another_customer(
    stack, orders_api, inventory_api, notifier_api, smtp_server, webhook_receiver
) -> None:
    sku = await stocked_sku(stack, inventory_api, units=100)
    slow = await register(notifier_api, webhook_receiver, send_email=False)
    quick = await register(notifier_api, webhook_receiver, send_email=False)
    webhook_receiver.slow(slow, 6.0)
    for _ in range(20):  # more than one destination's share of the delivery slots
        await place_order(orders_api, new_customer("en"), [(sku, 1)], channel=slow)
    await asyncio.sleep(WINDOW_S + 0.5)  # the slow platform's messages are on the wire
    placed_at = time.monotonic()
    order_id = await place_order(orders_api, new_customer("en"), [(sku, 1)], channel=quick)

    async def arrived() -> bool:
        return bool(webhook_receiver.of(quick))

    assert await eventually(arrived, timeout=20)
    # The slow platform's first answers come 6 s after its messages went out: the quick platform's
    # message must not wait for them (the bound leaves room for a loaded machine).
    took = webhook_receiver.of(quick)[0].at - placed_at
    assert took < WINDOW_S + 4.5, f"the quick platform waited {took:.1f} s behind the slow one"
    assert not webhook_receiver.of(slow) or webhook_receiver.of(slow)[0].at > webhook_receiver.of(quick)[0].at
    assert (await notifications(notifier_api, order_id))[0]["status"] == "sent"
    webhook_receiver.slow(slow, 0)


async def test_a_sender_killed_after_sending_is_replaced_when_its_lease_ends_and_the_repeat_has_the_same_id(
    stack, db, notifier_api, webhook_receiver
) -> None:
    """What a courier leaves behind when it is killed after the platform got the message and before
    it recorded that: the row claimed (attempt 1, leased) and the message delivered. Once the lease
    ends the message goes again, under the same webhook-id, and is recorded (and announced) once."""
    channel = await register(notifier_api, webhook_receiver, send_email=False)
    notification_id, order_id = uuid4(), uuid4()
    payload = json.dumps({"type": "order.confirmation", "data": {"order_id": str(order_id)}})
    message_id, now = f"msg_{notification_id}", datetime.now(UTC)
    async with db("notifier") as conn:
        await conn.execute(
            "INSERT INTO notification (id, order_id, customer_id, kind, kinds, channel, destination, recipient, language,"
            " subject, body_text, body_html, payload, status, attempts, lease_until)"
            " VALUES ($1, $2, 'c-lease', 'confirmation', '{confirmation}', 'webhook', $3, $4, 'en', 's', 't', '<p>t</p>',"
            " $5::jsonb, 'sending', 1, now() + interval '2 seconds')",
            notification_id, order_id, webhook_receiver.url(channel), channel, payload,
        )
    lease_ends = time.monotonic() + 2
    headers = {"content-type": "application/json", "webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(webhook_receiver.secrets[channel]).sign(message_id, now, payload)}
    async with httpx.AsyncClient() as client:  # the send the killed courier made
        assert (await client.post(webhook_receiver.url(channel), content=payload, headers=headers)).status_code == 200

    async def sent_again() -> bool:
        return len(webhook_receiver.of(channel)) >= 2

    assert await eventually(sent_again, timeout=15)
    hooks = webhook_receiver.of(channel)
    assert [h.headers["webhook-id"] for h in hooks] == [message_id, message_id] and all(h.verified for h in hooks)
    assert hooks[1].at >= lease_ends - 0.3, "sent again before the lease ended"

    async def recorded() -> dict[str, Any] | None:
        detail: dict[str, Any] = (await notifier_api.get(f"/v1/notifications/{notification_id}")).json()
        return detail if detail["status"] == "sent" else None

    detail = await eventually(recorded, timeout=10)
    assert detail is not None and detail["attempts"] == 2
    await asyncio.sleep(1)
    assert len(webhook_receiver.of(channel)) == 2
    async with db("notifier") as conn:
        announced = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE event_type = 'NotificationSent' AND envelope->'payload'->>'notification_id' = $1",
            str(notification_id))
    assert announced == 1
