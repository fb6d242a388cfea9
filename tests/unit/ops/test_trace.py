"""The causal tree of one order from raw records: found by the order id in the payload (not by
correlation id), causes kept as context, republished copies counted once, dead letters attached."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from services.ops.trace import order_trace, trace_json, walk
from shared.ops.records import RecordFilter, StreamRecord

ORDER = str(uuid4())
OTHER = str(uuid4())


@dataclass
class Raw:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Any


def record(topic: str, offset: int, event_type: str, payload: dict[str, Any], *, event_id: str | None = None,
           cause: str | None = None, correlation: str = "corr", headers: dict[str, str] | None = None) -> StreamRecord:
    event_id = event_id or str(uuid4())
    envelope = {"event_id": event_id, "event_type": event_type, "correlation_id": correlation, "causation_id": cause,
                "producer": "test", "payload": payload}
    all_headers = {"event_type": event_type, **(headers or {})}
    raw = Raw(topic, 0, offset, 1_000 + offset, str(payload.get("order_id") or payload.get("sku")).encode(),
              json.dumps(envelope).encode(), [(k, v.encode()) for k, v in all_headers.items()])
    return StreamRecord.of(raw)


def test_the_order_s_events_and_their_causes_form_one_tree_in_causal_order() -> None:
    placed = record("orders", 1, "OrderPlaced", {"order_id": ORDER, "lines": [{"sku": "MUG", "qty": 2}]}, correlation=ORDER)
    short = record("stock", 2, "StockShort", {"order_id": ORDER, "sku": "MUG", "qty_short": 2}, cause=placed.event_id)
    lines = [{"sku": "MUG", "qty": 5}]
    receipt = record("receipts", 3, "GoodsReceived", {"receipt_id": "R-1", "lines": lines}, correlation="R-1")
    # The allocation carries the receipt's correlation id: found by its order id all the same.
    allocated = record("allocations", 4, "BackorderAllocated", {"order_id": ORDER, "sku": "MUG", "qty": 2},
                       cause=receipt.event_id, correlation="R-1")
    unrelated = record("orders", 5, "OrderPlaced", {"order_id": OTHER, "lines": []})
    told = record("notifications", 6, "NotificationSent",
                  {"order_id": ORDER, "kind": "ready", "cause_event_ids": [allocated.event_id]})

    roots = order_trace([told, unrelated, allocated, receipt, short, placed], ORDER)

    tree = [(depth, node.record.event_type, node.about_order) for depth, node in walk(roots)]
    assert tree == [
        (0, "OrderPlaced", True), (1, "StockShort", True),
        (0, "GoodsReceived", False), (1, "BackorderAllocated", True), (2, "NotificationSent", True),
    ]


def test_a_republished_copy_counts_once_and_a_dead_letter_is_attached_to_its_event() -> None:
    placed = record("orders", 1, "OrderPlaced", {"order_id": ORDER, "lines": []})
    copy = record("orders", 9, "OrderPlaced", {"order_id": ORDER, "lines": []}, event_id=placed.event_id)
    parked = record("orders.dlq", 0, "OrderPlaced", {"order_id": ORDER, "lines": []}, event_id=placed.event_id,
                    headers={"dlq.consumer": "inventory", "dlq.reason": "rejected: order repeats a line number"})

    roots = order_trace([placed, copy, parked], ORDER)

    assert len(roots) == 1
    assert roots[0].copies == 2
    assert roots[0].dead_letters == [{"consumer": "inventory", "reason": "rejected: order repeats a line number"}]
    assert trace_json(roots)[0]["dead_letters"][0]["consumer"] == "inventory"


def test_an_order_nobody_wrote_about_has_no_trace() -> None:
    assert order_trace([record("orders", 1, "OrderPlaced", {"order_id": OTHER, "lines": []})], ORDER) == []


def test_a_filter_selects_by_type_sku_and_order_and_a_line_names_the_essentials() -> None:
    short = record("stock", 2, "StockShort", {"order_id": ORDER, "sku": "MUG", "line_no": 1, "qty_short": 2})
    lines = [{"sku": "MUG", "qty": 2}, {"sku": "CUP", "qty": 1}]
    placed = record("orders", 1, "OrderPlaced", {"order_id": ORDER, "lines": lines})

    assert RecordFilter(sku="CUP")(placed) and not RecordFilter(sku="CUP")(short)
    assert RecordFilter(frozenset({"StockShort"}), order_id=ORDER)(short)
    assert not RecordFilter(order_id=OTHER)(short)
    assert short.essentials() == "sku=MUG line_no=1 qty_short=2"  # its key (the order id here) is shown apart
    assert placed.essentials() == "lines=[MUGx2, CUPx1]"
    assert short.as_json()["event_type"] == "StockShort"


def test_a_value_that_is_not_an_envelope_is_still_shown() -> None:
    raw = Raw("orders", 0, 7, 0, None, b"\x00not json", [("event_type", b"OrderPlaced")])
    shown = StreamRecord.of(raw)
    assert shown.envelope is None and shown.event_type == "OrderPlaced" and shown.payload == {} and shown.order_id is None
