"""The outbox writes envelopes with `envelope_json`, not through the Envelope model: what it writes
must be exactly what Envelope writes, and what every consumer reads back."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import uuid4

import pytest

from shared.events import (
    BackorderAllocated,
    Customer,
    Envelope,
    EtaChanged,
    Event,
    OrderedLine,
    OrderPlaced,
    envelope_json,
)

EVENTS: list[Event] = [
    BackorderAllocated(
        order_id=uuid4(), line_no=2, sku="SKU-1", qty=3, source="receipt", source_id="R-1", receipt_id="R-1", cross_dock=True
    ),
    EtaChanged(
        order_id=uuid4(), line_no=1, sku="SKU-2", previous_date=None, new_date=date(2026, 12, 1), reason="purchase_order_changed"
    ),
    OrderPlaced(
        order_id=uuid4(),
        external_id="shop \"eu\" #1 \u00fc",
        channel="web",
        customer=Customer(id="c-1", email="ana@example.com", locale="pt-BR", tier="vip"),
        partial_allowed=False,
        placed_at=datetime(2026, 11, 23, 12, 30, tzinfo=UTC),
        lines=(OrderedLine(line_no=1, sku="SKU-1", qty=2), OrderedLine(line_no=2, sku="SKU-2", qty=1)),
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: event.event_type)
@pytest.mark.parametrize("causation_id", [None, str(uuid4())])
def test_envelope_json_is_what_the_envelope_model_writes(event: Event, causation_id: str | None) -> None:
    event_id, occurred_at = uuid4(), datetime(2026, 11, 23, 16, 48, 45, 651152, tzinfo=UTC)
    written = envelope_json(event, event_id, occurred_at, "corr-\u00e9\"1", causation_id, "allocator")

    model = Envelope(
        event_id=event_id,
        event_type=event.event_type,
        schema_version=event.schema_version,
        occurred_at=occurred_at,
        correlation_id="corr-\u00e9\"1",
        causation_id=causation_id,
        producer="allocator",
        payload=event.model_dump(mode="json"),
    )
    assert written == model.model_dump_json()
    read = Envelope.model_validate_json(written)
    assert read == model and read.parsed() == event
