"""Poison on every consumed topic (not JSON, the wrong shape, an unknown event type, a future schema
version, a 1 MB message), each topic's poison followed on the same partition by a valid event that must
take effect: unknown types are skipped, the rest dead-lettered by every consumer concerned, with a reason."""

from __future__ import annotations

import json
from datetime import date, timedelta
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaProducer
from faults.faultstack import FaultStack
from faults.flow import order_body
from faults.history import HANDLED, history_problems, read_topics
from faults.scenario import report
from support import envelope_for

from shared.events import (
    EtaChanged,
    Event,
    GoodsReceived,
    LineCancelled,
    PurchaseOrderChanged,
    PurchaseOrderLine,
    ReceivedLine,
    Stream,
)
from shared.settings import SUBSCRIPTIONS

DEAD_LETTERED = ("not_json", "wrong_shape", "one_megabyte")  # by every consumer of the topic


def poison(valid: Event, future: Event) -> dict[str, bytes]:
    unknown = envelope_for(valid).model_copy(update={"event_type": "GiftWrapped", "payload": {"ribbon": "red"}})
    huge = envelope_for(valid).model_dump(mode="json") | {"payload": {"padding": "x" * 1_000_000}}
    return {
        "not_json": b"{this is not json",
        "wrong_shape": json.dumps({"event_type": valid.event_type, "payload": 5}).encode(),
        "unknown_type": unknown.model_dump_json().encode(),
        "future_version": envelope_for(future).model_copy(update={"schema_version": 99}).model_dump_json().encode(),
        "one_megabyte": json.dumps(huge).encode(),
    }


async def test_poison_is_skipped_or_dead_lettered_and_the_partition_keeps_flowing(fault_stack: FaultStack) -> None:
    sku, waiting_sku = f"F-poison-{uuid4().hex[:6]}", f"F-poison-{uuid4().hex[:6]}"
    async with httpx.AsyncClient(timeout=15) as http:
        for name in (sku, waiting_sku):
            policy = await http.put(f"{fault_stack.base_url('inventory')}/v1/skus/{name}", json={"backorderable": True})
            assert policy.is_success, policy.text
        placed = await http.post(f"{fault_stack.base_url('orders')}/v1/orders", json=order_body(
            [{"sku": waiting_sku, "qty": 1}], partial_allowed=True, tier="standard"))
        assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    await fault_stack.wait_quiescent(timeout=60)

    stranger, po_id, receipt_id = uuid4(), f"PO-poison-{uuid4().hex[:6]}", f"RCV-poison-{uuid4().hex[:6]}"
    soon, later = date.today() + timedelta(days=42), date.today() + timedelta(days=99)
    po = dict(purchase_order_id=po_id, supplier="ACME", status="open", expected_at=soon, change="created")
    cases: dict[Stream, tuple[Event, Event]] = {
        Stream.ORDERS: (LineCancelled(order_id=stranger, line_no=1, sku=sku, qty_cancelled=1, reason="poison test"),
                        LineCancelled(order_id=stranger, line_no=2, sku=sku, qty_cancelled=1, reason="poison test")),
        Stream.STOCK: (PurchaseOrderChanged(version=1, lines=(PurchaseOrderLine(sku=sku, qty_open=5),), **po),
                       PurchaseOrderChanged(version=2, lines=(PurchaseOrderLine(sku=sku, qty_open=9),), **po)),
        Stream.RECEIPTS: (GoodsReceived(receipt_id=receipt_id, warehouse="DC1", lines=(ReceivedLine(sku=sku, qty=2),)),
                          GoodsReceived(receipt_id=receipt_id + "-v99", warehouse="DC1", lines=(ReceivedLine(sku=sku, qty=3),))),
        Stream.ALLOCATIONS: (EtaChanged(order_id=order_id, line_no=1, sku=waiting_sku, previous_date=None, new_date=soon,
                                        reason="poison test"),
                             EtaChanged(order_id=order_id, line_no=1, sku=waiting_sku, previous_date=None, new_date=later,
                                        reason="poison test")),
    }
    producer = AIOKafkaProducer(bootstrap_servers=fault_stack.settings.kafka_bootstrap_servers, acks="all",
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    sent: dict[Stream, tuple[str, str, str]] = {}  # stream: (valid event id, future event id, key)
    try:
        for stream, (valid, future) in cases.items():
            topic, key = fault_stack.settings.topic(stream), valid.key.encode()
            messages = poison(valid, future)
            for kind, value in messages.items():
                await producer.send_and_wait(topic, value=value, key=key, headers=[("poison", kind.encode())])
            envelope = envelope_for(valid)
            await producer.send_and_wait(topic, value=envelope.model_dump_json().encode(), key=key)
            sent[stream] = (str(envelope.event_id), json.loads(messages["future_version"])["event_id"], valid.key)
    finally:
        await producer.stop()
    await fault_stack.wait_quiescent(timeout=60)

    problems = await effects_missing(fault_stack, stranger, po_id, sku, receipt_id, order_id, soon)
    problems += await dead_letters_wrong(fault_stack, cases, sent)
    problems += await history_problems(fault_stack)
    assert not problems, report(problems)


async def effects_missing(stack: FaultStack, stranger, po_id, sku, receipt_id, order_id, soon) -> list[str]:  # type: ignore[no-untyped-def]
    """The valid event after each topic's poison took effect."""
    problems = []
    async with stack.connect("inventory") as conn:
        if not await conn.fetchval("SELECT cancelled FROM line_stock WHERE order_id = $1 AND line_no = 1", stranger):
            problems.append("orders topic: the LineCancelled after the poison left no cancelled line in inventory")
        if not await conn.fetchval("SELECT 1 FROM receipt WHERE receipt_id = $1", receipt_id):
            problems.append("receipts topic: the GoodsReceived after the poison was not recorded by inventory")
    async with stack.connect("allocator") as conn:
        if await conn.fetchval("SELECT status FROM waiting_line WHERE order_id = $1 AND line_no = 1", stranger) != "cancelled":
            problems.append("orders topic: the LineCancelled after the poison left no tombstone in the allocator")
        if not await conn.fetchval("SELECT 1 FROM inbound_supply WHERE purchase_order_id = $1 AND sku = $2", po_id, sku):
            problems.append("stock topic: the PurchaseOrderChanged after the poison never reached the allocator")
        if not await conn.fetchval("SELECT 1 FROM supply_applied WHERE source_id = $1", receipt_id):
            problems.append("receipts topic: the GoodsReceived after the poison was not served by the allocator")
    async with stack.connect("orders") as conn:
        expected = await conn.fetchval("SELECT expected_date FROM order_line WHERE order_id = $1 AND line_no = 1", order_id)
        if expected != soon:
            problems.append(f"allocations topic: the EtaChanged after the poison did not date the line ({expected})")
    return problems


async def dead_letters_wrong(stack: FaultStack, cases, sent) -> list[str]:  # type: ignore[no-untyped-def]
    """Who dead-lettered which poison (with a reason), and that the future version was applied nowhere."""
    topics = {stream: stack.settings.topic(stream) for stream in cases}
    read = await read_topics(stack.settings, [f"{topic}.dlq" for topic in topics.values()])
    inboxes = set()
    for service in SUBSCRIPTIONS:
        async with stack.connect(service) as conn:
            inboxes |= {(service, str(r["event_id"])) for r in await conn.fetch("SELECT event_id FROM inbox")}
    problems = []
    for stream, (valid, _) in cases.items():
        topic, (_, future_id, key) = topics[stream], sent[stream]
        letters = [m for m in read[f"{topic}.dlq"] if m.key == key and "poison" in m.headers]
        by = {(m.headers["poison"], m.headers.get("dlq.consumer")) for m in letters if m.headers.get("dlq.reason")}
        consumers = [s for s, streams in SUBSCRIPTIONS.items() if stream in streams]
        for kind in DEAD_LETTERED:
            missing = [s for s in consumers if (kind, s) not in by]
            if missing:
                problems.append(f"{topic}: {kind} poison not dead-lettered (with a reason) by {missing}")
        if skipped_wrongly := sorted(s for kind, s in by if kind == "unknown_type"):
            problems.append(f"{topic}: an unknown event type was dead-lettered by {skipped_wrongly} (it should be skipped)")
        handlers = [s for s in consumers if valid.event_type in HANDLED[s]]
        if missing := [s for s in handlers if ("future_version", s) not in by]:
            problems.append(f"{topic}: {valid.event_type} schema_version 99 not dead-lettered by {missing}")
        if applied := sorted(s for s in handlers if (s, future_id) in inboxes):
            problems.append(f"{topic}: {valid.event_type} schema_version 99 was applied by {applied}")
    return problems
