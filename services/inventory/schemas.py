"""What the inventory API accepts and shows: strict request types (no "5" for 5, no "yes" for true,
no unknown fields) kept apart from the tables."""

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    field_validator,
    model_validator,
)

from shared.events import Sku
from shared.fields import DateText, Omittable, WholeNumber

MAX_QTY = 1_000_000
MAX_LINES = 500

StrictBool = Annotated[bool, Strict()]
# Integers are strict ("5" and true are refused) but take 2.0 as 2: JSON numbers have no int type.
Qty = Annotated[int, Strict(), Field(gt=0, le=MAX_QTY, description="units, 1..1,000,000"), WholeNumber]
Units = Annotated[int, Strict(), Field(ge=0, le=MAX_QTY), WholeNumber]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
# Free text: no control characters, C0 or C1 (PostgreSQL cannot store NUL, and nobody means to send
# them), and something visible; whitespace around it is stripped, so the pattern allows it there.
# U+FEFF is a space to JavaScript's regexes, not to the stripping: never counted as visible.
PRINTABLE = r"^\s*[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f\ufeff][^\x00-\x1f\x7f-\x9f]*\s*$"
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=PRINTABLE)]
Token = Annotated[str, Field(min_length=1, pattern=r"^[^\s\x00-\x1f\x7f]+$")]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- SKUs and stock -----------------------------------------------------------------------------


class SkuPolicyWrite(Request):
    backorderable: StrictBool = True
    discontinued: StrictBool = False
    max_backorder_qty: Annotated[int, Strict(), Field(ge=0, le=1_000_000_000), WholeNumber] | None = Field(
        None, description="cap on units waiting for this SKU across all orders; null: no cap"
    )
    supplier: Name | None = None
    safety_stock: Units = 0
    case_pack: Annotated[int, Strict(), Field(ge=1, le=MAX_QTY), WholeNumber] = 1
    min_order_qty: Units = 0
    release_date: Annotated[date, DateText] | None = Field(
        None, description="sold as a preorder until this day (UTC): lines wait for it, not for goods; null: released"
    )
    preorder_cap: Annotated[int, Strict(), Field(ge=0, le=1_000_000_000), WholeNumber] | None = Field(
        None, description="cap on units preordered across all orders; null: no cap"
    )


class SkuPolicyRead(BaseModel):
    sku: str
    backorderable: bool
    discontinued: bool
    max_backorder_qty: int | None
    supplier: str | None
    safety_stock: int
    case_pack: int
    min_order_qty: int
    release_date: date | None
    preorder_cap: int | None


class StockRead(BaseModel):
    sku: str
    available: int
    reserved: int
    pending: int
    cross_docked: int
    shipped: int
    received: int
    counted_in: int
    counted_out: int
    backordered: int
    preordered: int = Field(description="units on lines waiting for the release date (a tally, like backordered)")


NOT_ZERO: dict[str, Any] = {"not": {"const": 0}}  # what `not_zero` below refuses, in the schema


class AdjustmentCreate(Request):
    sku: Sku
    delta: Annotated[
        int, Strict(),
        Field(ge=-MAX_QTY, le=MAX_QTY, description="units found (+) or missing (-), not 0", json_schema_extra=NOT_ZERO),
        WholeNumber,
    ]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=PRINTABLE)]

    @field_validator("delta")
    @classmethod
    def not_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("delta must not be 0")
        return delta


class AvailabilityRead(BaseModel):
    sku: str
    status: Literal["in_stock", "backorder", "preorder", "out_of_stock"]
    available: int
    expected_at: date | None = Field(
        description="backorder: when a purchase order would cover one more unit; preorder: the release date"
    )


# --- purchase orders ----------------------------------------------------------------------------


class PurchaseOrderLineWrite(Request):
    sku: Sku
    qty: Qty


# Not in JSON Schema, which knows no "today": a date in the past is refused with a 422.
ExpectedAt = Annotated[date, Field(description="when the goods are expected: today (UTC) or later")]


class PurchaseOrderCreate(Request):
    id: Identifier
    supplier: Name
    lines: Annotated[list[PurchaseOrderLineWrite], Field(min_length=1, max_length=MAX_LINES)]
    expected_at: ExpectedAt


class PurchaseOrderLineRevision(Request):
    sku: Sku
    qty: Annotated[Units, Field(description="new ordered quantity; 0 cuts the line; never below what arrived")]


class PurchaseOrderPatch(Request):
    """What changes, at least one of the two; a field left out stays as it is (null is refused
    rather than read as "unchanged", so that the schema can say a field is a date or absent)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})
    expected_at: Omittable[ExpectedAt] = None
    lines: Omittable[Annotated[list[PurchaseOrderLineRevision], Field(min_length=1, max_length=MAX_LINES)]] = None

    @model_validator(mode="after")
    def changes_something(self) -> "PurchaseOrderPatch":
        if self.expected_at is None and self.lines is None:
            raise ValueError("give expected_at and/or lines")
        return self


# RFC 3339 with its offset, as the OpenAPI states it: pydantic alone would also take a Unix time,
# which the schema's `date-time` does not allow.
RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"


def rfc3339(value: object) -> object:
    if not isinstance(value, str) or not re.fullmatch(RFC3339, value):
        raise ValueError("must be a date and time with its offset, like 2026-11-30T10:00:00Z")
    return value


def in_utc(moment: datetime) -> datetime:
    """One form per instant, so that a report repeated with another offset is the same report."""
    return moment.astimezone(UTC)


# Not in JSON Schema either: a time in the future, or before the purchase order's last supplier
# state, is refused with a 422.
SupplierTime = Annotated[
    AwareDatetime, BeforeValidator(rfc3339), AfterValidator(in_utc),
    Field(
        json_schema_extra={"pattern": RFC3339},
        description="when it happened, with its offset; not in the future (5 minutes of clock skew allowed) nor before"
                    " the purchase order's last supplier state; absent or null: now",
    ),
]
NewExpectedAt = Annotated[
    ExpectedAt | None, Field(description="a new expected date, today (UTC) or later; absent or null: unchanged")
]


class PurchaseOrderConfirm(Request):
    """The supplier confirmed the purchase order; the body is optional."""

    confirmed_at: SupplierTime | None = None
    expected_at: NewExpectedAt = None


class PurchaseOrderShip(Request):
    """The supplier shipped the goods; the body is optional."""

    shipped_at: SupplierTime | None = None
    carrier: Name | None = None
    tracking: Annotated[Name | None, Field(description="the carrier's tracking reference")] = None
    expected_at: NewExpectedAt = None


class PurchaseOrderLineRead(BaseModel):
    sku: str
    qty_ordered: int
    qty_received: int
    qty_open: int


class SupplierStepRead(BaseModel):
    state: Literal["open", "confirmed", "shipped", "received"]
    at: datetime
    carrier: str | None
    tracking: str | None


class PurchaseOrderRead(BaseModel):
    id: str
    supplier: str
    expected_at: date
    status: Literal["open", "cancelled", "closed"]
    version: int
    lines: list[PurchaseOrderLineRead]
    supplier_state: Literal["open", "confirmed", "shipped", "received"] = Field(
        description="where the goods are by the supplier's word: open, confirmed, shipped, received (every line arrived)"
    )
    supplier_history: list[SupplierStepRead] = Field(description="every supplier state reached, oldest first")


# --- receipts and suggestions -------------------------------------------------------------------


class ReceiptLineWrite(Request):
    sku: Sku
    qty: Qty


class ReceiptCreate(Request):
    receipt_id: Annotated[Token, Field(max_length=128)]
    warehouse: Annotated[Token, Field(max_length=64)]
    purchase_order_id: Identifier | None = None
    lines: Annotated[list[ReceiptLineWrite], Field(min_length=1, max_length=MAX_LINES)]


class ReceiptRead(BaseModel):
    receipt_id: str
    warehouse: str
    purchase_order_id: str | None
    lines: list[ReceiptLineWrite]
    outcome: Literal["recorded", "replayed"]


class SuggestedLineRead(BaseModel):
    sku: str
    qty: int
    backordered: int
    on_order: int


class PurchaseSuggestionRead(BaseModel):
    supplier: str
    lines: list[SuggestedLineRead]
