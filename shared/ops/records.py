"""One message of a topic as ops tools show it: where it is, what it is, and its essentials in a
line. Pure: built from what a reader fetched, never from a service's database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


class RawRecord(Protocol):
    """What aiokafka's ConsumerRecord offers (a protocol, so tests build records without a broker)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Any


# Payload fields worth a glance, in the order a line shows them; anything else is in --json.
ESSENTIAL_FIELDS = (
    "order_id", "sku", "line_no", "qty", "qty_short", "qty_waiting", "qty_cancelled", "qty_reserved",
    "promised_date", "previous_date", "new_date", "reason", "source", "receipt_id", "purchase_order_id",
    "status", "cross_dock", "kind", "channel", "error",
)


@dataclass(frozen=True)
class StreamRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    headers: dict[str, str]
    envelope: dict[str, Any] | None  # None when the value is not an event envelope (or was dropped)
    value: bytes | None

    @classmethod
    def of(cls, record: RawRecord) -> StreamRecord:
        headers = {name: (raw or b"").decode(errors="replace") for name, raw in record.headers or ()}
        envelope: dict[str, Any] | None = None
        if record.value:
            try:
                parsed = json.loads(record.value)
                envelope = parsed if isinstance(parsed, dict) else None
            except ValueError:
                envelope = None
        key = record.key.decode(errors="replace") if record.key is not None else None
        return cls(record.topic, record.partition, record.offset, record.timestamp, key, headers, envelope, record.value)

    @property
    def address(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def event_type(self) -> str:
        return self.headers.get("event_type") or str(self._envelope_field("event_type") or "?")

    @property
    def event_id(self) -> str | None:
        value = self._envelope_field("event_id") or self.headers.get("event_id")
        return str(value) if value else None

    @property
    def correlation_id(self) -> str | None:
        value = self._envelope_field("correlation_id")
        return str(value) if value else None

    @property
    def causation_id(self) -> str | None:
        value = self._envelope_field("causation_id")
        return str(value) if value else None

    @property
    def producer(self) -> str | None:
        return self.headers.get("producer") or self._envelope_field("producer")

    @property
    def payload(self) -> dict[str, Any]:
        payload = self._envelope_field("payload")
        return payload if isinstance(payload, dict) else {}

    @property
    def time(self) -> datetime:
        """When the broker got it (the producer's timestamp); the event's occurred_at if it has none."""
        if self.timestamp_ms > 0:
            return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)
        occurred = self._envelope_field("occurred_at")
        return datetime.fromisoformat(occurred) if isinstance(occurred, str) else datetime.fromtimestamp(0, UTC)

    @property
    def order_id(self) -> str | None:
        value = self.payload.get("order_id")
        return str(value) if value else None

    @property
    def skus(self) -> set[str]:
        """The SKUs it is about: its own `sku`, or those of its lines."""
        payload = self.payload
        skus = {str(payload["sku"])} if payload.get("sku") else set()
        for line in payload.get("lines") or ():
            if isinstance(line, dict) and line.get("sku"):
                skus.add(str(line["sku"]))
        return skus

    def essentials(self) -> str:
        """`field=value` pairs of what matters in the payload, plus a count of lines."""
        payload = self.payload
        parts = [
            f"{name}={payload[name]}" for name in ESSENTIAL_FIELDS
            if payload.get(name) not in (None, "", ()) and str(payload[name]) != self.key  # the key is shown already
        ]
        lines = payload.get("lines")
        if isinstance(lines, list) and lines:
            shown = ", ".join(
                f"{line.get('sku')}x{line.get('qty', line.get('qty_open'))}" for line in lines[:4] if isinstance(line, dict)
            )
            parts.append(f"lines=[{shown}{', ...' if len(lines) > 4 else ''}]")
        for name, value in self.headers.items():
            if name.startswith("dlq.") and name != "dlq.reason":
                parts.append(f"{name}={value}")
        if "dlq.reason" in self.headers:
            parts.append(f"reason={self.headers['dlq.reason']!r}")
        return " ".join(parts)

    def as_json(self) -> dict[str, Any]:
        """The record for scripts: stable keys, the envelope as it travelled."""
        return {
            "topic": self.topic, "partition": self.partition, "offset": self.offset,
            "timestamp": self.time.isoformat(), "key": self.key, "event_type": self.event_type,
            "event_id": self.event_id, "correlation_id": self.correlation_id, "causation_id": self.causation_id,
            "headers": self.headers, "envelope": self.envelope,
        }

    def _envelope_field(self, name: str) -> Any:
        return self.envelope.get(name) if self.envelope else None


@dataclass(frozen=True)
class RecordFilter:
    """What `fulfil tail` and the dashboard's live feed select; empty fields select everything."""

    event_types: frozenset[str] = frozenset()
    sku: str | None = None
    order_id: str | None = None

    def __call__(self, record: StreamRecord) -> bool:
        if self.event_types and record.event_type not in self.event_types:
            return False
        if self.sku is not None and self.sku not in record.skus:
            return False
        return self.order_id is None or record.order_id == self.order_id
