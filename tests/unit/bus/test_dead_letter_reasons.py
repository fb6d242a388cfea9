"""Dead-letter reasons a person can read: one line naming the event, the field and what is wrong,
without pydantic's noise (a tuple "should have at least 1 item" because its bad line was dropped)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from shared.bus.handlers import DeadLetter
from shared.bus.reasons import failed, rejected, unparseable
from shared.events import Envelope, parse_envelope


def wire(event_type: str, payload: dict[str, Any]) -> bytes:
    return Envelope(event_type=event_type, correlation_id="c", producer="t", payload=payload).model_dump_json().encode()


def reason_for(raw: bytes) -> str:
    with pytest.raises(ValueError) as refused:
        parse_envelope(raw)
    return unparseable(refused.value)


def order_placed(**changes: Any) -> dict[str, Any]:
    return {
        "order_id": str(uuid4()), "external_id": "x", "channel": "web", "customer": {"id": "c", "email": "c@example.com"},
        "partial_allowed": True, "placed_at": datetime.now(UTC).isoformat(), "lines": [{"line_no": 1, "sku": "S", "qty": 1}],
    } | changes


def test_a_negative_quantity_names_the_event_the_field_and_the_value() -> None:
    raw = wire("OrderPlaced", order_placed(lines=[{"line_no": 1, "sku": "S", "qty": -5}]))
    assert reason_for(raw) == "unparseable OrderPlaced: lines.0.qty must be greater than 0 (got -5)"


def test_a_bad_line_is_not_also_reported_as_an_empty_tuple() -> None:
    raw = wire("GoodsReceived", {"receipt_id": "R-1", "warehouse": "W1", "lines": [{"sku": "S", "qty": -5}]})
    assert reason_for(raw) == "unparseable GoodsReceived: lines.0.qty must be greater than 0 (got -5)"


def test_an_empty_tuple_is_still_reported_when_it_is_the_problem() -> None:
    raw = wire("GoodsReceived", {"receipt_id": "R-1", "warehouse": "W1", "lines": []})
    assert reason_for(raw) == "unparseable GoodsReceived: lines must have at least 1 item after validation, not 0"


def test_missing_and_unknown_fields_are_named() -> None:
    payload = {k: v for k, v in order_placed(coupon="FREE").items() if k != "channel"}
    assert reason_for(wire("OrderPlaced", payload)) == (
        "unparseable OrderPlaced: channel is missing; coupon is not a known field"
    )


def test_a_broken_envelope_and_a_message_that_is_not_json() -> None:
    assert reason_for(b'{"event_type": 5}') == (
        "unparseable envelope: event_type must be a valid string (got 5); correlation_id is missing;"
        " producer is missing; payload is missing"
    )
    assert reason_for(b"{not json") == "unparseable message: not JSON (key must be a string at line 1 column 2)"


def test_many_problems_are_cut_after_five_and_long_values_are_shortened() -> None:
    reason = reason_for(wire("OrderPlaced", {"order_id": "k" * 100}))
    assert reason.startswith("unparseable OrderPlaced: order_id must be a valid UUID")
    assert '(got "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk…)' in reason and reason.endswith("; and 2 more")
    assert "\n" not in reason


def test_other_refusals_keep_their_words_on_one_line() -> None:
    future = Envelope(event_type="OrderPlaced", schema_version=2, correlation_id="c", producer="t", payload=order_placed())
    assert reason_for(future.model_dump_json().encode()) == (
        "unparseable: OrderPlaced schema_version 2 is newer than the 1 this build reads"
    )
    assert rejected(DeadLetter("unknown sku X\nat line 2")) == "rejected: unknown sku X at line 2"


def test_an_event_that_kept_failing_names_the_event_the_error_and_its_first_line() -> None:
    error = RuntimeError('duplicate key value violates unique constraint "shipment_pkey"\nDETAIL: Key (id)=(42) exists.')
    reason = failed(error, 5, "ShipmentReported")
    assert reason == (
        "failed after 5 attempts applying ShipmentReported: "
        'RuntimeError: duplicate key value violates unique constraint "shipment_pkey"'
    )
    assert failed(ValueError(), 3, "OrderPlaced") == "failed after 3 attempts applying OrderPlaced: ValueError: no message"
