"""What the orders API accepts and shows: request and response models, apart from the tables."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

from services.orders.domain import Line, LineState
from shared.events import Customer, Qty, ShipmentLine, Sku
from shared.fields import NO_NUL, WholeNumber, storable
from shared.settings import get_settings

Text = Annotated[str, Field(min_length=1, max_length=128, pattern=NO_NUL), AfterValidator(storable)]
# No "5" for 5 and no "yes" for true: a platform sending strings has a bug worth hearing about.
StrictQty = Annotated[Qty, Strict(), WholeNumber]
StrictBool = Annotated[bool, Strict()]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# No whitespace and no control characters (C0, C1: regex engines disagree on whether \x85 is a space).
EMAIL_CHARS = r"[^@\s\x00-\x1f\x7f-\x9f]+"
EMAIL = rf"^{EMAIL_CHARS}@{EMAIL_CHARS}\.{EMAIL_CHARS}$"


class CustomerCreate(Customer):
    """The customer as a platform sends it: the event's Customer, with text the database can store."""

    id: Text
    email: Annotated[str, Field(min_length=3, max_length=254, pattern=EMAIL), AfterValidator(storable)]


class LineCreate(Request):
    sku: Sku
    qty: StrictQty


class Shipping(Request):
    partial_allowed: StrictBool = False


class OrderCreate(Request):
    external_id: Text
    channel: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL), AfterValidator(storable)]
    customer: CustomerCreate
    # The limit is a setting, read once when the service starts, so that the OpenAPI states it.
    lines: Annotated[list[LineCreate], Field(min_length=1, max_length=get_settings().max_order_lines)]
    shipping: Shipping = Shipping()

    def request_hash(self) -> str:
        """Fingerprint of the canonical body (defaults filled, keys sorted) for idempotent replays."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class PromiseRead(BaseModel):
    promised_date: date | None = Field(description="null: no date any more (or not yet)")
    previous_date: date | None
    reason: str = Field(description="booked, release_date, queue_moved, priority_changed, purchase_order_changed, ...")
    at: datetime


class QueuePlace(BaseModel):
    """Where a waiting line stands, read from the allocator's book when the order is read."""

    position: int = Field(description="1-based place among the lines waiting for the SKU")
    lines_waiting: int = Field(description="lines waiting for the SKU, this one included")
    units_waiting: int = Field(description="units waiting for the SKU")
    units_ahead: int = Field(description="units the lines before this one wait for")


class CoveringPurchaseOrder(BaseModel):
    id: str
    supplier_state: str = Field(description="open, confirmed, shipped (by the supplier)")
    expected_at: date
    qty_open: int = Field(description="units of the SKU still to come on it")


class LineRead(BaseModel):
    line_no: int
    sku: str
    qty: int
    state: LineState
    reserved: int
    preordered: int = Field(0, description="units that waited, or wait, for the SKU's release date (state preordered)")
    backordered: int = Field(description="units still waiting in the backorder book")
    allocated: int = Field(description="units allocated from the book (picked or cross-docked)")
    requested: int = Field(description="units asked of the warehouse in shipment requests")
    shipped: int
    cancelled: int
    expected_date: date | None
    rejection_reason: str | None
    cancel_reason: str | None
    promised_dates: list[PromiseRead] = Field([], description="every date the line was promised, oldest first")
    queue: QueuePlace | None = Field(None, description="a waiting line's place in the book (null when nothing waits)")
    covering_purchase_orders: list[CoveringPurchaseOrder] = Field(
        [], description="the purchase orders on their way to a waiting line, by expected date"
    )

    @classmethod
    def of(cls, line: Line) -> LineRead:
        return cls(
            line_no=line.line_no, sku=line.sku, qty=line.qty, state=line.state, reserved=line.reserved,
            preordered=line.preordered, backordered=line.backordered, allocated=line.allocated, requested=line.requested,
            shipped=line.shipped,
            cancelled=line.cancelled, expected_date=line.expected_date, rejection_reason=line.rejected_reason,
            cancel_reason=line.cancel_reason,
        )


class OrderRead(BaseModel):
    id: UUID
    external_id: str
    channel: str
    customer: Customer
    shipping: Shipping
    placed_at: datetime
    lines: list[LineRead]
    tracking_url: str | None = Field(
        None, description="the customer's tracking page (a signed link, no API key; given when the order is read)"
    )
    book_unavailable: str | None = Field(
        None, description="why the waiting lines' places could not be read from the book (the rest of the order is current)"
    )


class OrderList(BaseModel):
    orders: list[OrderRead]
    limit: int
    offset: int


class CancelRequest(Request):
    reason: Annotated[str, Field(min_length=1, max_length=500, pattern=NO_NUL), AfterValidator(storable)] = "customer_request"


class ShipmentConfirm(Request):
    shipment_id: UUID


class ShipmentRead(BaseModel):
    id: UUID
    order_id: UUID
    status: Literal["requested", "shipped", "cancelled"]
    lines: list[ShipmentLine]
    requested_at: datetime
    shipped_at: datetime | None


class ShipmentList(BaseModel):
    shipments: list[ShipmentRead]
