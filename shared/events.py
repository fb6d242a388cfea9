"""The event contract between services: one envelope, one pydantic model per event, one registry.

Every model here is the single source of truth for its schema; services import them and never
redefine a payload. Each event class names the stream (topic setting) it travels on and the field
that keys it, so that events about one entity stay in order on one partition.
"""

from __future__ import annotations

import os
from collections.abc import Container
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

Qty = Annotated[int, Field(gt=0, le=1_000_000)]
Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]


def utc_now() -> datetime:
    return datetime.now(UTC)


_id_bytes = b""


def new_event_id() -> UUID:
    """A random (version 4) UUID drawn from a buffer of OS randomness: one system call per 256 ids
    instead of one per id, which showed up at several percent of a busy allocator's CPU."""
    global _id_bytes
    if not _id_bytes:
        _id_bytes = os.urandom(16 * 256)
    chunk, _id_bytes = _id_bytes[:16], _id_bytes[16:]
    return UUID(bytes=chunk, version=4)


def _forget_id_bytes() -> None:
    global _id_bytes
    _id_bytes = b""


os.register_at_fork(after_in_child=_forget_id_bytes)  # a forked child must never reuse the parent's ids


class Stream(StrEnum):
    """Logical streams; the topic name of each is a setting (see shared.settings.Topics)."""

    ORDERS = "orders"
    STOCK = "stock"
    RECEIPTS = "receipts"
    ALLOCATIONS = "allocations"
    NOTIFICATIONS = "notifications"


class Event(BaseModel):
    """Base of every payload: strict about unknown fields so a producer bug is caught at the edge."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_type: ClassVar[str]
    stream: ClassVar[Stream]
    key_field: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @property
    def key(self) -> str:
        return str(getattr(self, self.key_field))


class Envelope(BaseModel):
    """What travels on the wire; `payload` is validated against the registry on demand."""

    model_config = ConfigDict(extra="forbid")
    event_id: UUID = Field(default_factory=new_event_id)
    event_type: str
    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utc_now)
    correlation_id: str
    causation_id: str | None = None
    producer: str
    payload: dict[str, Any]

    def parsed(self) -> Event:
        model = EVENT_TYPES.get(self.event_type)
        if model is None:
            raise UnknownEventType(self.event_type)
        return model.model_validate(self.payload)


def envelope_json(
    event: Event, event_id: UUID, occurred_at: datetime, correlation_id: str, causation_id: str | None, producer: str
) -> str:
    """The wire form of the Envelope carrying `event`, as Envelope(...).model_dump_json() writes it,
    in one pydantic-core call: building the Envelope model and its payload dict first was about a
    fifth of the allocator's CPU on the receipt path, one event per allocated line (that both
    write the same is a unit test)."""
    return to_json(
        {
            "event_id": event_id,
            "event_type": event.event_type,
            "schema_version": event.schema_version,
            "occurred_at": occurred_at,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "producer": producer,
            "payload": event,
        }
    ).decode()


class UnknownEventType(ValueError):
    pass


# --- orders stream (key: order id) -------------------------------------------------------------


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Annotated[str, Field(min_length=1, max_length=128)]
    email: Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    locale: Annotated[str, Field(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")] = "en"
    tier: Literal["vip", "standard"] = "standard"


class OrderedLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    line_no: int
    sku: Sku
    qty: Qty


class OrderPlaced(Event):
    event_type: ClassVar[str] = "OrderPlaced"
    stream: ClassVar[Stream] = Stream.ORDERS
    key_field: ClassVar[str] = "order_id"
    order_id: UUID
    external_id: str
    channel: str
    customer: Customer
    partial_allowed: bool
    placed_at: datetime
    lines: tuple[OrderedLine, ...]


class LineCancelled(Event):
    """Everything of the line that had not shipped is cancelled: reservations and held units go
    back (inventory), waiting units leave the book (allocator)."""

    event_type: ClassVar[str] = "LineCancelled"
    stream: ClassVar[Stream] = Stream.ORDERS
    key_field: ClassVar[str] = "order_id"
    order_id: UUID
    line_no: int
    sku: Sku
    qty_cancelled: int
    reason: str


class ShipmentLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    line_no: int
    sku: Sku
    qty: Qty
    source: Literal["cross_dock", "pick"] = "pick"


class ShipmentRequested(Event):
    """Units ready to leave: the moment a platform would capture payment."""

    event_type: ClassVar[str] = "ShipmentRequested"
    stream: ClassVar[Stream] = Stream.ORDERS
    key_field: ClassVar[str] = "order_id"
    order_id: UUID
    shipment_id: UUID
    lines: tuple[ShipmentLine, ...]


class ShipmentLeft(Event):
    """What left the building on one requested shipment: a warehouse's report and orders'
    confirmation carry the same facts, as two event types (a reader handles one or the other)."""

    stream: ClassVar[Stream] = Stream.ORDERS
    key_field: ClassVar[str] = "order_id"
    order_id: UUID
    shipment_id: UUID
    lines: tuple[ShipmentLine, ...]
    shipped_at: datetime


class ShipmentReported(ShipmentLeft):
    """A warehouse's report that a requested shipment left (what `POST .../shipments` does over
    HTTP). Orders checks it against the request and announces Shipped, the one fact the others use."""

    event_type: ClassVar[str] = "ShipmentReported"


class Shipped(ShipmentLeft):
    """Orders' confirmation that a shipment left as requested: inventory moves stock by it."""

    event_type: ClassVar[str] = "Shipped"


# --- stock stream (key: SKU; order id for StockReserved, purchase order id for purchase orders) ---


class RejectionReason(StrEnum):
    DISCONTINUED = "discontinued"
    NOT_BACKORDERABLE = "not_backorderable"
    BACKORDER_LIMIT = "backorder_limit"
    PREORDER_LIMIT = "preorder_limit"
    UNKNOWN_SKU = "unknown_sku"


class StockReserved(Event):
    """Keyed by order, not SKU: an order's lines reserved together reach orders in one partition,
    so they make one shipment request (one payment capture), not one per line."""

    event_type: ClassVar[str] = "StockReserved"
    stream: ClassVar[Stream] = Stream.STOCK
    key_field: ClassVar[str] = "order_id"
    order_id: UUID
    line_no: int
    sku: Sku
    qty: Qty


class LinePreordered(Event):
    """A line for a SKU not released yet waits for its release date, not for goods: it is no
    backorder (the allocator never books it). Told at placement, and again with the date before
    (`previous_release_date`) whenever the release date moves. On the release date the line is
    decided like any other (StockReserved, StockShort or LineRejected) in order-time order.
    Keyed by order, like StockReserved: an order's lines reach orders in one partition."""

    event_type: ClassVar[str] = "LinePreordered"
    stream: ClassVar[Stream] = Stream.STOCK
    key_field: ClassVar[str] = "order_id"
    order_id: UUID
    line_no: int
    sku: Sku
    qty: Qty
    release_date: date
    previous_release_date: date | None = None


class StockShort(Event):
    """The backorderable shortfall of one line; carries what the book needs to rank and
    cross-dock it without asking anyone (tier, order time, partial shipment, sibling count)."""

    event_type: ClassVar[str] = "StockShort"
    stream: ClassVar[Stream] = Stream.STOCK
    key_field: ClassVar[str] = "sku"
    order_id: UUID
    line_no: int
    sku: Sku
    qty_short: Qty
    qty_reserved: int
    ordered_at: datetime
    customer_tier: str
    partial_allowed: bool
    order_short_lines: int
    # The SKU's shortfall counter at this line (inventory numbers them per SKU, 1, 2, ...): a
    # put-away names the last one the allocator had seen, so inventory can tell which waiting
    # lines the allocator did not know about when it put the units on the shelf. 0 = not numbered.
    short_seq: int = Field(default=0, ge=0)


class LineRejected(Event):
    event_type: ClassVar[str] = "LineRejected"
    stream: ClassVar[Stream] = Stream.STOCK
    key_field: ClassVar[str] = "sku"
    order_id: UUID
    line_no: int
    sku: Sku
    qty: Qty
    reason: RejectionReason


class StockReleased(Event):
    """Units handed back to the book (a cancelled reservation, a positive count, or units of a
    receipt put away while lines the allocator had not booked waited): the book is served first,
    the allocator puts away the rest."""

    event_type: ClassVar[str] = "StockReleased"
    stream: ClassVar[Stream] = Stream.STOCK
    key_field: ClassVar[str] = "sku"
    release_id: UUID
    sku: Sku
    qty: Qty
    reason: str
    # Set when the units are a receipt's, still at the receiving dock: they may cross-dock.
    receipt_id: str | None = Field(default=None, min_length=1, max_length=64)


class PurchaseOrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sku: Sku
    qty_open: int


class PurchaseOrderChanged(Event):
    """The full current state of a purchase order; `version` lets consumers drop stale copies.
    `receipt_ids` names the receipts already deducted from `qty_open`, so a consumer that saw a
    receipt before this copy (they travel on different topics) does not count it twice.

    `change` says what this version did: created, updated, cancelled, confirmed or shipped (by the
    supplier), received (a receipt counted against it). `supplier_state` is where the goods are by
    the supplier's word and `supplier_state_at` when it got there (null only in version 1 copies,
    which had neither); a copy whose `supplier_state` differs from the previous one's announces
    that change. `carrier` and `tracking` are the shipment's, once shipped with them.

    Version 2 added the supplier fields (with defaults, so a version 1 copy still reads)."""

    event_type: ClassVar[str] = "PurchaseOrderChanged"
    stream: ClassVar[Stream] = Stream.STOCK
    key_field: ClassVar[str] = "purchase_order_id"
    schema_version: ClassVar[int] = 2
    purchase_order_id: str
    version: int
    supplier: str
    status: Literal["open", "cancelled", "closed"]
    expected_at: date
    lines: tuple[PurchaseOrderLine, ...]
    change: str
    receipt_ids: tuple[str, ...] = ()
    supplier_state: Literal["open", "confirmed", "shipped", "received"] = "open"
    supplier_state_at: datetime | None = None
    carrier: str | None = None
    tracking: str | None = None


class GoodsPutAway(Event):
    event_type: ClassVar[str] = "GoodsPutAway"
    stream: ClassVar[Stream] = Stream.STOCK
    key_field: ClassVar[str] = "sku"
    sku: Sku
    qty: Qty
    source: Literal["receipt", "release"]
    source_id: str
    # The last StockShort.short_seq of this SKU the allocator had booked when it decided: lines
    # inventory numbered later were not in the book, and get these units first (see inventory).
    shorts_seen: int = Field(default=0, ge=0)


# --- receipts stream (key: receipt id; warehouse systems may publish here directly) ------------


class ReceivedLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sku: Sku
    qty: Qty


class GoodsReceived(Event):
    event_type: ClassVar[str] = "GoodsReceived"
    stream: ClassVar[Stream] = Stream.RECEIPTS
    key_field: ClassVar[str] = "receipt_id"
    receipt_id: Annotated[str, Field(min_length=1, max_length=128)]
    warehouse: Annotated[str, Field(min_length=1, max_length=64)]
    purchase_order_id: str | None = None
    lines: Annotated[tuple[ReceivedLine, ...], Field(min_length=1, max_length=500)]
    received_at: datetime = Field(default_factory=utc_now)


# --- allocations stream (key: SKU) -------------------------------------------------------------


class BackorderAllocated(Event):
    event_type: ClassVar[str] = "BackorderAllocated"
    stream: ClassVar[Stream] = Stream.ALLOCATIONS
    key_field: ClassVar[str] = "sku"
    order_id: UUID
    line_no: int
    sku: Sku
    qty: Qty
    source: Literal["receipt", "release"]
    source_id: str
    receipt_id: str | None
    cross_dock: bool


class BackorderBooked(Event):
    """A short line entered the backorder book: the promise the customer is told. `promised_date`
    is None when no open purchase order covers the line yet; every later move is an EtaChanged."""

    event_type: ClassVar[str] = "BackorderBooked"
    stream: ClassVar[Stream] = Stream.ALLOCATIONS
    key_field: ClassVar[str] = "sku"
    order_id: UUID
    line_no: int
    sku: Sku
    qty_waiting: Qty
    promised_date: date | None


class EtaChanged(Event):
    """The promised date of a line already in the book moved (BackorderBooked carries the first)."""

    event_type: ClassVar[str] = "EtaChanged"
    stream: ClassVar[Stream] = Stream.ALLOCATIONS
    key_field: ClassVar[str] = "sku"
    order_id: UUID
    line_no: int
    sku: Sku
    previous_date: date | None
    new_date: date | None
    reason: str


# --- notifications stream (key: order id) ------------------------------------------------------


class NotificationSent(Event):
    """A message reached its receiver (the SMTP server or the platform's webhook answered 2xx).
    `recipient` is the customer id (email) or the channel (webhook), never an address."""

    event_type: ClassVar[str] = "NotificationSent"
    stream: ClassVar[Stream] = Stream.NOTIFICATIONS
    key_field: ClassVar[str] = "order_id"
    order_id: UUID
    notification_id: UUID
    kind: str
    kinds: tuple[str, ...]
    channel: Literal["email", "webhook"]
    recipient: str
    language: str
    attempts: int
    cause_event_ids: tuple[UUID, ...] = ()


class NotificationFailed(Event):
    """A message given up: refused for good, or still failing after the last attempt."""

    event_type: ClassVar[str] = "NotificationFailed"
    stream: ClassVar[Stream] = Stream.NOTIFICATIONS
    key_field: ClassVar[str] = "order_id"
    order_id: UUID
    notification_id: UUID
    kind: str
    kinds: tuple[str, ...]
    channel: Literal["email", "webhook"]
    recipient: str
    language: str
    attempts: int
    error: str
    permanent: bool
    cause_event_ids: tuple[UUID, ...] = ()


EVENT_TYPES: dict[str, type[Event]] = {
    model.event_type: model
    for model in (
        OrderPlaced, LineCancelled, ShipmentRequested, ShipmentReported, Shipped,
        StockReserved, LinePreordered, StockShort, LineRejected, StockReleased, PurchaseOrderChanged, GoodsPutAway,
        GoodsReceived, BackorderAllocated, BackorderBooked, EtaChanged, NotificationSent, NotificationFailed,
    )
}


def parse_envelope(raw: bytes, handled: Container[str] | None = None) -> tuple[Envelope, Event]:
    """Validate a message from the wire; raises ValueError (incl. ValidationError) when it cannot be used.

    With `handled` (the event types the reader has handlers for), any other type raises
    UnknownEventType before its payload is validated: a reader skips what it does not handle, so a
    type added by a newer producer (or a payload only its real consumer understands) is not its
    poison. A schema_version newer than the model's is refused with the version named: reading a
    version 2 payload as version 1 would silently drop or misread what changed."""
    envelope = Envelope.model_validate_json(raw)
    model = EVENT_TYPES.get(envelope.event_type)
    if model is None or (handled is not None and envelope.event_type not in handled):
        raise UnknownEventType(envelope.event_type)
    if envelope.schema_version > model.schema_version:
        raise ValueError(
            f"{envelope.event_type} schema_version {envelope.schema_version} is newer than the"
            f" {model.schema_version} this build reads"
        )
    return envelope, model.model_validate(envelope.payload)


__all__ = ["EVENT_TYPES", "Envelope", "Event", "ValidationError", "parse_envelope", "utc_now"]
