"""One example message of every event for the AsyncAPI document, built from the real models (so it
validates) with fixed values (so the document does not change between runs). The examples tell one
story: order SO-1001 waits for SKU-A, purchase order PO-77 brings it, receipt RCV-1001 serves it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from shared.events import (
    BackorderAllocated,
    BackorderBooked,
    Customer,
    EtaChanged,
    Event,
    GoodsPutAway,
    GoodsReceived,
    LineCancelled,
    LinePreordered,
    LineRejected,
    NotificationFailed,
    NotificationSent,
    OrderedLine,
    OrderPlaced,
    PurchaseOrderChanged,
    PurchaseOrderLine,
    ReceivedLine,
    RejectionReason,
    ShipmentLine,
    ShipmentReported,
    ShipmentRequested,
    Shipped,
    StockReleased,
    StockReserved,
    StockShort,
    envelope_json,
)

ORDER_ID = UUID("6f1c2a3e-8b4d-4c1e-9f0a-1b2c3d4e5f60")
SHIPMENT_ID = UUID("0b7e9d2c-4a1f-4e3b-8c5d-6e7f8a9b0c1d")
NOTIFICATION_ID = UUID("c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f")
RELEASE_ID = UUID("9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d")
PLACED_AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
SUPPLIER_SHIPPED_AT = datetime(2026, 11, 27, 14, 20, tzinfo=UTC)
RECEIVED_AT = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
SHIPPED_AT = datetime(2026, 11, 30, 15, 45, tzinfo=UTC)
_SHIPMENT = (ShipmentLine(line_no=1, sku="SKU-A", qty=2, source="cross_dock"), ShipmentLine(line_no=2, sku="SKU-B", qty=1))


def _notification_sent() -> NotificationSent:
    return NotificationSent(
        order_id=ORDER_ID, notification_id=NOTIFICATION_ID, kind="delay", kinds=("delay",),
        channel="email", recipient="C-42", language="en", attempts=1,
        cause_event_ids=(UUID("5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f"),),
    )


EXAMPLES: tuple[Event, ...] = (
    OrderPlaced(
        order_id=ORDER_ID, external_id="SO-1001", channel="web",
        customer=Customer(id="C-42", email="ada@example.com", locale="en-GB", tier="vip"),
        partial_allowed=False, placed_at=PLACED_AT,
        lines=(OrderedLine(line_no=1, sku="SKU-A", qty=2), OrderedLine(line_no=2, sku="SKU-B", qty=1)),
    ),
    LineCancelled(order_id=ORDER_ID, line_no=3, sku="SKU-C", qty_cancelled=1, reason="customer_request"),
    ShipmentRequested(order_id=ORDER_ID, shipment_id=SHIPMENT_ID, lines=_SHIPMENT),
    ShipmentReported(order_id=ORDER_ID, shipment_id=SHIPMENT_ID, lines=_SHIPMENT, shipped_at=SHIPPED_AT),
    Shipped(order_id=ORDER_ID, shipment_id=SHIPMENT_ID, lines=_SHIPMENT, shipped_at=SHIPPED_AT),
    StockReserved(order_id=ORDER_ID, line_no=2, sku="SKU-B", qty=1),
    LinePreordered(order_id=ORDER_ID, line_no=3, sku="SKU-NEW", qty=1, release_date=date(2027, 3, 1),
                   previous_release_date=date(2027, 2, 15)),
    StockShort(
        order_id=ORDER_ID, line_no=1, sku="SKU-A", qty_short=2, qty_reserved=0, ordered_at=PLACED_AT,
        customer_tier="vip", partial_allowed=False, order_short_lines=1, short_seq=17,
    ),
    LineRejected(order_id=ORDER_ID, line_no=4, sku="SKU-OLD", qty=1, reason=RejectionReason.DISCONTINUED),
    StockReleased(release_id=RELEASE_ID, sku="SKU-C", qty=1, reason="cancellation"),
    PurchaseOrderChanged(
        purchase_order_id="PO-77", version=3, supplier="ACME", status="open", expected_at=date(2026, 11, 30),
        lines=(PurchaseOrderLine(sku="SKU-A", qty_open=12),), change="shipped", supplier_state="shipped",
        supplier_state_at=SUPPLIER_SHIPPED_AT, carrier="DHL", tracking="JD014600006281234567",
    ),
    GoodsPutAway(sku="SKU-A", qty=10, source="receipt", source_id="RCV-1001", shorts_seen=17),
    GoodsReceived(
        receipt_id="RCV-1001", warehouse="DC1", purchase_order_id="PO-77",
        lines=(ReceivedLine(sku="SKU-A", qty=12),), received_at=RECEIVED_AT,
    ),
    BackorderAllocated(
        order_id=ORDER_ID, line_no=1, sku="SKU-A", qty=2, source="receipt", source_id="RCV-1001",
        receipt_id="RCV-1001", cross_dock=True,
    ),
    BackorderBooked(order_id=ORDER_ID, line_no=1, sku="SKU-A", qty_waiting=2, promised_date=date(2026, 11, 30)),
    EtaChanged(
        order_id=ORDER_ID, line_no=1, sku="SKU-A", previous_date=date(2026, 11, 30), new_date=date(2026, 12, 12),
        reason="purchase_order_changed",
    ),
    _notification_sent(),
    NotificationFailed(
        **_notification_sent().model_dump(exclude={"attempts"}), attempts=5,
        error="SMTP 550 mailbox unavailable", permanent=True,
    ),
)


def example_record(event: Event, producer: str) -> dict[str, Any]:
    """The record a service (or a warehouse) would publish with `event`: envelope and headers, with ids
    and times fixed so that the document generated from it does not change between runs."""
    event_id = uuid5(NAMESPACE_URL, f"backorder/example/{event.event_type}")
    correlation_id = _correlation(event)
    causation_id = None if event.event_type in _CHAIN_STARTS else str(uuid5(NAMESPACE_URL, f"backorder/cause/{event.event_type}"))
    occurred_at = datetime(2026, 11, 30, 10, 0, 5, tzinfo=UTC)
    envelope = json.loads(envelope_json(event, event_id, occurred_at, correlation_id, causation_id, producer))
    return {
        "name": event.event_type,
        "summary": f"{event.event_type} keyed by {event.key}",
        "headers": _headers(event.event_type, event_id, producer, correlation_id),
        "payload": envelope,
    }


_CHAIN_STARTS = frozenset({"OrderPlaced", "GoodsReceived", "PurchaseOrderChanged", "ShipmentReported"})


def _correlation(event: Event) -> str:
    for field in ("order_id", "receipt_id", "purchase_order_id", "release_id"):
        if field in type(event).model_fields:
            return str(getattr(event, field))
    return str(getattr(event, "source_id", event.key))


def _headers(event_type: str, event_id: UUID, producer: str, correlation_id: str) -> dict[str, str]:
    """As the relay writes them (shared/bus/relay.py)."""
    trace_id = hashlib.md5(correlation_id.encode(), usedforsecurity=False).hexdigest()
    return {
        "event_type": event_type,
        "event_id": str(event_id),
        "producer": producer,
        "traceparent": f"00-{trace_id}-{event_id.hex[:16]}-01",
    }
