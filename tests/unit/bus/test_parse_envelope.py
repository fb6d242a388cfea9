"""What a reader does with a message before any I/O: unhandled and unknown types are told apart
from poison before the payload is validated, and a newer schema version is refused by name."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from shared.events import Customer, Envelope, OrderedLine, OrderPlaced, UnknownEventType, parse_envelope


def order_placed() -> OrderPlaced:
    return OrderPlaced(
        order_id=uuid4(), external_id="x", channel="web", customer=Customer(id="c", email="c@example.com"),
        partial_allowed=True, placed_at=datetime.now(UTC), lines=(OrderedLine(line_no=1, sku="S", qty=1),),
    )


def wire(event_type: str = "OrderPlaced", schema_version: int = 1, payload: dict[str, object] | None = None) -> bytes:
    body = payload if payload is not None else order_placed().model_dump(mode="json")
    envelope = Envelope(event_type=event_type, schema_version=schema_version, correlation_id="c", producer="t", payload=body)
    return envelope.model_dump_json().encode()


def test_a_handled_event_is_parsed() -> None:
    envelope, event = parse_envelope(wire(), {"OrderPlaced"})
    assert isinstance(event, OrderPlaced) and envelope.event_type == "OrderPlaced"


def test_an_unknown_type_is_not_poison() -> None:
    with pytest.raises(UnknownEventType, match="OrderNoteAdded"):
        parse_envelope(wire("OrderNoteAdded", payload={"note": "anything"}))


def test_a_type_the_reader_does_not_handle_is_not_validated() -> None:
    with pytest.raises(UnknownEventType):
        parse_envelope(wire(payload={"not": "an order"}), {"StockShort"})
    with pytest.raises(ValueError, match="validation error"):
        parse_envelope(wire(payload={"not": "an order"}), {"OrderPlaced"})


def test_a_newer_schema_version_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="OrderPlaced schema_version 2 is newer than the 1 this build reads"):
        parse_envelope(wire(schema_version=2), {"OrderPlaced"})
