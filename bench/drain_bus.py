"""The broker side of the drain benchmark: publish the receipts as a warehouse would, and watch the
allocations topic, group-less, for the BackorderAllocated events they cause."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic_core import from_json

from shared.events import BackorderAllocated, Envelope, GoodsReceived, ReceivedLine, Stream
from shared.settings import Settings

LineRef = tuple[str, int]
"""(order_id as text, line_no): how a line appears in an event payload."""


@dataclass(frozen=True)
class Receipt:
    receipt_id: str
    sku: str
    qty: int
    purchase_order_id: str | None = None  # with --dated: the purchase order it delivers, exactly
    round: int = 0  # its place among the SKU's receipts (0 first)

    def event(self) -> GoodsReceived:
        line = ReceivedLine(sku=self.sku, qty=self.qty)
        return GoodsReceived(
            receipt_id=self.receipt_id, warehouse="WH-BENCH", purchase_order_id=self.purchase_order_id, lines=(line,)
        )


def split_receipts(supply: dict[str, int], per_sku: int, tag: str, dated: bool = False) -> list[Receipt]:
    """Every unit of every SKU, in `per_sku` near-equal receipts (fewer when a SKU has fewer units),
    interleaved across SKUs so all books are drained at once. `dated`: each receipt delivers a
    purchase order of its own (seeded by drain_book.seed_purchase_orders)."""
    per_sku_receipts: list[list[Receipt]] = []
    for index, (sku, units) in enumerate(sorted(supply.items())):
        parts = max(1, min(per_sku, units))
        sizes = [units // parts + (1 if k < units % parts else 0) for k in range(parts)]
        per_sku_receipts.append(
            [
                Receipt(f"RCPT-{tag}-{index:03d}-{k}", sku, size, f"PO-{tag}-{index:03d}-{k}" if dated else None, k)
                for k, size in enumerate(sizes)
            ]
        )
    rounds = max((len(receipts) for receipts in per_sku_receipts), default=0)
    return [receipts[k] for k in range(rounds) for receipts in per_sku_receipts if k < len(receipts)]


async def publish_receipts(
    producer: AIOKafkaProducer, settings: Settings, receipts: list[Receipt]
) -> tuple[dict[str, float], list[UUID]]:
    """Publish all receipts back to back (keyed by receipt id, as warehouses do) and wait for the
    acks. Returns the perf_counter time at which each was handed to the producer, and the event ids."""
    topic = settings.topic(Stream.RECEIPTS)
    await producer.partitions_for(topic)  # metadata first, so the first send is not slower than the rest
    messages = []
    for receipt in receipts:
        event = receipt.event()
        payload = event.model_dump(mode="json")
        envelope = Envelope(event_type=event.event_type, correlation_id=receipt.receipt_id, producer="bench", payload=payload)
        headers = [("event_type", event.event_type.encode()), ("event_id", str(envelope.event_id).encode())]
        messages.append((receipt.receipt_id, envelope.event_id, envelope.model_dump_json().encode(), headers))
    published: dict[str, float] = {}
    acks = []
    for receipt_id, _, value, headers in messages:
        published[receipt_id] = time.perf_counter()
        acks.append(await producer.send(topic, value=value, key=receipt_id.encode(), headers=headers))
    await asyncio.gather(*acks)
    return published, [event_id for _, event_id, _, _ in messages]


async def warm_up(producer: AIOKafkaProducer, settings: Settings, receipt: Receipt) -> list[UUID]:
    """One receipt for a SKU with an empty book (it is put away): the allocator's consumer has
    joined its group and run the receipt path once when the stack is quiescent after it."""
    return (await publish_receipts(producer, settings, [receipt]))[1]


class Seen(NamedTuple):
    """One BackorderAllocated as the watcher received it (a tuple: building 45,000 frozen
    dataclasses was a visible share of the watcher's CPU, taken from the cores it measures)."""

    received_at: float
    receipt_id: str
    line: LineRef
    sku: str
    qty: int
    partition: int
    offset: int


@dataclass
class AllocationWatcher:
    """Reads the allocations topic from where it ended before the receipts were published, and
    stops when every unit the seeded lines wait for has been allocated."""

    settings: Settings
    waiting: dict[LineRef, int]
    allocated: dict[LineRef, int] = field(default_factory=lambda: defaultdict(int))
    seen: list[Seen] = field(default_factory=list)
    duplicates: int = 0
    _event_ids: set[str] = field(default_factory=set)
    _consumer: AIOKafkaConsumer | None = None

    units_missing: int = -1  # kept up to date per event: recounting 45,000 lines per fetch would load the machine

    def __post_init__(self) -> None:
        self.units_missing = sum(self.waiting.values())

    @property
    def overfilled(self) -> list[LineRef]:
        return [line for line, qty in self.allocated.items() if qty > self.waiting.get(line, 0)]

    async def start(self) -> None:
        """Assign every partition and seek to its current end. The end comes from highwater()
        after a fetch: end_offsets/seek_to_end/'latest' are wrong on the embedded broker."""
        topic = self.settings.topic(Stream.ALLOCATIONS)
        # Few large fetches (the broker answers when 256 KiB are there or after 50 ms): the watcher
        # shares the 2 cores with what it measures, and a fetch loop at full speed costs it half a
        # core. Times are read to within 50 ms, which can only make the reported rate lower. No CRC
        # check of every record batch either: the broker is on this machine, over loopback.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, enable_auto_commit=False,
            fetch_max_wait_ms=50, fetch_min_bytes=256 * 1024, max_partition_fetch_bytes=4 * 1024 * 1024,
            check_crcs=False,
        )
        await consumer.start()
        self._consumer = consumer
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        for _ in range(100):
            await consumer.getmany(*partitions, timeout_ms=100, max_records=len(partitions))
            if all(consumer.highwater(tp) is not None for tp in partitions):
                break
        else:
            raise TimeoutError(f"no highwater for {topic} after 100 fetches")
        for tp in partitions:
            consumer.seek(tp, consumer.highwater(tp) or 0)

    async def run(self, timeout: float) -> None:
        """Count BackorderAllocated events for the seeded lines until none is missing."""
        assert self._consumer is not None
        deadline = time.monotonic() + timeout
        wanted = BackorderAllocated.event_type.encode()
        while self.units_missing > 0:
            if time.monotonic() > deadline:
                missing, seen = self.units_missing, len(self.seen)
                raise TimeoutError(f"{missing} units still unallocated after {timeout:.0f} s ({seen} events seen)")
            batch = await self._consumer.getmany(timeout_ms=100, max_records=20_000)
            received_at = time.perf_counter()
            for records in batch.values():
                for record in records:
                    if dict(record.headers).get("event_type") != wanted:
                        continue
                    envelope = from_json(record.value or b"{}", cache_strings=False)  # a third of json.loads' time
                    self._count(envelope, received_at, record.partition, record.offset)

    def _count(self, envelope: dict[str, object], received_at: float, partition: int, offset: int) -> None:
        payload = envelope["payload"]
        assert isinstance(payload, dict)
        line = (str(payload["order_id"]), int(payload["line_no"]))
        if line not in self.waiting:
            return  # another run's, or another test's, line
        event_id = str(envelope["event_id"])
        if event_id in self._event_ids:
            self.duplicates += 1  # a republished copy (at-least-once delivery): counted once
            return
        self._event_ids.add(event_id)
        qty, sku, receipt_id = int(payload["qty"]), str(payload["sku"]), str(payload["receipt_id"])
        waiting, before = self.waiting[line], self.allocated[line]
        self.units_missing -= min(before + qty, waiting) - min(before, waiting)
        self.allocated[line] += qty
        self.seen.append(Seen(received_at, receipt_id, line, sku, qty, partition, offset))

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
