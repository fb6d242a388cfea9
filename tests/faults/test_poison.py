"""Poison on every consumed topic (not JSON, the wrong shape, an unknown event type, a future schema
version, a 1 MB message), each topic's poison followed on the same partition by a valid event that must
take effect: unknown types are skipped; a message with no usable envelope is dead-lettered by every
consumer of the topic; one of a known type that cannot be applied (a future version, a 1 MB payload)
by the consumers that handle that type, with a reason, while the others pass over it unread."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaProducer
from faults.faultstack import FaultStack
from faults.flow import order_body
from faults.history import HANDLED, event_id_of, history_problems, read_topics
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

DEAD_LETTERED = ("not_json", "wrong_shape")  # by every consumer of the topic: no envelope to judge it by
BY_HANDLERS = ("future_version", "one_megabyte")  # dead-lettered by the consumers that handle its type, skipped by the rest
FUTURE = 99


@dataclass
class Sent:
    key: str
    event_type: str
    valid_ids: list[str]  # the valid event after each poison, in order
    future_id: str


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
    soon = date.today() + timedelta(days=42)
    po = dict(purchase_order_id=po_id, supplier="ACME", status="open", expected_at=soon, change="created")
    # Per topic, the n-th valid event (each poison is followed by the next one; n = 99 is sent as poison
    # with schema_version 99). All of a topic's events share one key, so one partition.
    cases: dict[Stream, Callable[[int], Event]] = {
        Stream.ORDERS: lambda n: LineCancelled(order_id=stranger, line_no=1 + n, sku=sku, qty_cancelled=1, reason="poison test"),
        Stream.STOCK: lambda n: PurchaseOrderChanged(version=1 + n, lines=(PurchaseOrderLine(sku=sku, qty_open=5 + n),), **po),
        Stream.RECEIPTS: lambda n: GoodsReceived(receipt_id=f"{receipt_id}-{n}", warehouse="DC1",
                                                 lines=(ReceivedLine(sku=sku, qty=2),)),
        Stream.ALLOCATIONS: lambda n: EtaChanged(order_id=order_id, line_no=1, sku=waiting_sku, previous_date=None,
                                                 new_date=soon + timedelta(days=n), reason="poison test"),
    }
    producer = AIOKafkaProducer(bootstrap_servers=fault_stack.settings.kafka_bootstrap_servers, acks="all",
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    sent: dict[Stream, Sent] = {}
    try:
        for stream, nth in cases.items():
            topic, key = fault_stack.settings.topic(stream), nth(0).key.encode()
            messages = poison(nth(0), nth(FUTURE))
            valid_ids = []
            for n, (kind, value) in enumerate(messages.items()):
                await producer.send_and_wait(topic, value=value, key=key, headers=[("poison", kind.encode())])
                envelope = envelope_for(nth(n))
                await producer.send_and_wait(topic, value=envelope.model_dump_json().encode(), key=key)
                valid_ids.append(str(envelope.event_id))
            sent[stream] = Sent(key.decode(), nth(0).event_type, valid_ids, json.loads(messages["future_version"])["event_id"])
    finally:
        await producer.stop()
    await fault_stack.wait_quiescent(timeout=60)

    last = len(sent[Stream.ORDERS].valid_ids) - 1
    problems = await effects_missing(fault_stack, stranger, po_id, receipt_id, order_id, soon + timedelta(days=last), last)
    problems += await dead_letters_wrong(fault_stack, sent)
    problems += await history_problems(fault_stack)  # every valid event is in the inbox of each service handling it
    assert not problems, report(problems)


async def effects_missing(stack: FaultStack, stranger, po_id, receipt_id, order_id, last_date, last: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Each topic's valid events took effect, the last one included (and no future version did)."""
    problems = []
    count = last + 1
    receipts = [f"{receipt_id}-{n}" for n in range(count)]
    async with stack.connect("inventory") as conn:
        cancelled = "SELECT count(*) FROM line_stock WHERE order_id = $1 AND line_no <= $2 AND cancelled"
        if await conn.fetchval(cancelled, stranger, count) != count:
            problems.append(f"orders topic: inventory has not {count} lines cancelled by the LineCancelled between the poison")
        if await conn.fetchval("SELECT count(*) FROM receipt WHERE receipt_id = ANY($1)", receipts) != count:
            problems.append(f"receipts topic: inventory has not recorded the {count} GoodsReceived between the poison")
    async with stack.connect("allocator") as conn:
        tombstones = "SELECT count(*) FROM waiting_line WHERE order_id = $1 AND line_no <= $2 AND status = 'cancelled'"
        if await conn.fetchval(tombstones, stranger, count) != count:
            problems.append(f"orders topic: the allocator has not {count} tombstones from the LineCancelled between the poison")
        version = await conn.fetchval("SELECT max(version) FROM inbound_supply WHERE purchase_order_id = $1", po_id)
        if version is None or version < count:
            problems.append(f"stock topic: the allocator holds version {version} of the purchase order, not {count}")
        served = "SELECT count(DISTINCT source_id) FROM supply_applied WHERE source_id = ANY($1)"
        if await conn.fetchval(served, receipts) != count:
            problems.append(f"receipts topic: the allocator has not served the {count} GoodsReceived between the poison")
    async with stack.connect("orders") as conn:
        expected = await conn.fetchval("SELECT expected_date FROM order_line WHERE order_id = $1 AND line_no = 1", order_id)
        if expected != last_date:
            problems.append(f"allocations topic: the last EtaChanged did not date the line ({expected}, not {last_date})")
    return problems


async def dead_letters_wrong(stack: FaultStack, sent: dict[Stream, Sent]) -> list[str]:
    """Who dead-lettered which poison (with a reason); no valid event dead-lettered; the future version applied nowhere."""
    topics = {stream: stack.settings.topic(stream) for stream in sent}
    read = await read_topics(stack.settings, [f"{topic}.dlq" for topic in topics.values()])
    inboxes = set()
    for service in SUBSCRIPTIONS:
        async with stack.connect(service) as conn:
            inboxes |= {(service, str(r["event_id"])) for r in await conn.fetch("SELECT event_id FROM inbox")}
    problems = []
    for stream, case in sent.items():
        topic = topics[stream]
        letters = [m for m in read[f"{topic}.dlq"] if m.key == case.key]
        if valid_dead := [m.headers.get("dlq.reason") for m in letters if str(event_id_of(m)) in case.valid_ids]:
            problems.append(f"{topic}: valid events after the poison were dead-lettered: {valid_dead}")
        by = {(m.headers["poison"], m.headers.get("dlq.consumer")) for m in letters
              if "poison" in m.headers and m.headers.get("dlq.reason")}
        consumers = [s for s, streams in SUBSCRIPTIONS.items() if stream in streams]
        for kind in DEAD_LETTERED:
            if missing := [s for s in consumers if (kind, s) not in by]:
                problems.append(f"{topic}: {kind} poison not dead-lettered (with a reason) by {missing}")
        if skipped_wrongly := sorted(s for kind, s in by if kind == "unknown_type"):
            problems.append(f"{topic}: an unknown event type was dead-lettered by {skipped_wrongly} (it should be skipped)")
        handlers = [s for s in consumers if case.event_type in HANDLED[s]]
        for kind in BY_HANDLERS:
            if missing := [s for s in handlers if (kind, s) not in by]:
                problems.append(f"{topic}: {kind} {case.event_type} not dead-lettered (with a reason) by {missing}")
            if needless := sorted(s for k, s in by if k == kind and s not in handlers):
                problems.append(f"{topic}: {kind} {case.event_type} dead-lettered by {needless}, which do not handle it")
        if applied := sorted(s for s in handlers if (s, case.future_id) in inboxes):
            problems.append(f"{topic}: {case.event_type} schema_version 99 was applied by {applied}")
    return problems
