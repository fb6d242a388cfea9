"""The outbox relay: publishes committed outbox rows to Kafka in id order and marks them sent only
after the broker acknowledged them; republishes the retained rows a lost broker's consumers had not
consumed yet (consumed watermarks, recorded while the broker was alive)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from shared import metrics
from shared.events import Stream
from shared.settings import SUBSCRIPTIONS, Settings, asyncpg_dsn

from .crashpoints import RELAY_AFTER_PUBLISH, RELAY_BEFORE_PUBLISH, crash_point
from .failures import is_unreachable
from .rebuild import BrokerRebuild
from .tables import OUTBOX_CHANNEL

log = logging.getLogger("bus.relay")
_PARTITIONER = DefaultPartitioner()  # what AIOKafkaProducer uses unless given another (ours never is)

CLAIM_UNSENT = (
    "SELECT id, event_id, event_type, topic, key, envelope::text, envelope->>'correlation_id' AS correlation_id"
    " FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1"
)
MARK_SENT = """
    UPDATE outbox SET sent_at = now(), partition = s.partition, "offset" = s.off, cluster_id = $4
    FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS s(id, partition, off) WHERE outbox.id = s.id
"""
DELETE_EXPIRED = """
    DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_at < now() - make_interval(secs => $1) LIMIT 1000)
"""


@dataclass
class OutboxRelay:
    """One relay per service holds an advisory lock so events of a key leave in the order they
    were written; other instances of the service wait as standbys."""

    service: str
    database_url: str
    producer: AIOKafkaProducer
    settings: Settings
    # Consumer group -> the streams it reads: whose committed offsets make the consumed watermark.
    subscriptions: Mapping[str, tuple[Stream, ...]] = field(default_factory=lambda: SUBSCRIPTIONS)
    rebuild: BrokerRebuild = field(init=False)
    published: int = 0
    is_leader: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    # When the current outage began (None while healthy), and when the current lead was established.
    _outage_since: float | None = None
    _led_since: float | None = None

    def __post_init__(self) -> None:
        self.rebuild = BrokerRebuild(self.service, self.settings, self.subscriptions)

    @property
    def cluster_id(self) -> str:
        """The broker's cluster id as of the last check (the one sent rows are marked with)."""
        return self.rebuild.cluster_id

    @property
    def lock_id(self) -> int:
        return zlib.crc32(f"outbox-relay:{self.service}".encode())

    async def run(self) -> None:
        """Lead until stopped. Database or broker trouble ends the lead; it is taken again after a
        backoff of 1 s doubling to 30 s (back to 1 s after a lead that lasted 30 s). An outage is
        logged twice, its first error and its end with the duration, not once per attempt: a
        traceback a second for a minute of broker restart buried everything else in the logs."""
        backoff = 1.0
        while not self._stopping:
            self._led_since = None
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # database or broker trouble: back off, take the lock again
                self.is_leader = False
                if self._led_since is not None and time.monotonic() - self._led_since >= 30:
                    backoff = 1.0
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    # A server out of reach is an outage, not a bug: its traceback would say nothing more.
                    expected = is_unreachable(error) or isinstance(error, KafkaError)
                    log.error(
                        "outbox relay of %s failed: %r; retrying with backoff (1-30 s), recovery will be logged",
                        self.service, error, exc_info=None if expected else error,
                    )
                else:
                    log.debug("outbox relay of %s still failing: %r", self.service, error)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):  # stop() ends the wait
                    await asyncio.wait_for(self._wake.wait(), backoff)
                backoff = min(backoff * 2, 30.0)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _recovered(self) -> None:
        """The database answers (and, when leading, the broker): end the outage, if any, in the log."""
        if self._outage_since is not None:
            log.warning("outbox relay of %s recovered after %.1f s", self.service, time.monotonic() - self._outage_since)
            self._outage_since = None

    async def _lead(self) -> None:
        # Custom plans: a generic plan cached while the outbox was nearly empty (a seq scan and a
        # sort) would be kept through a burst and make every claim read the whole outbox.
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url), server_settings={"plan_cache_mode": "force_custom_plan"})
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_id):
                self._recovered()  # a standby: its database is back
                if self._stopping:
                    return
                await asyncio.sleep(self.settings.outbox_poll_interval_s)
            self.is_leader = True
            # LISTEN is a wake-up hint on this dedicated connection; the poll below is the fallback.
            await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
            # Asked afresh on every (re)start of the lead: a restarted broker has a new identity.
            await self.rebuild.check(conn, lead_start=True)
            self._led_since = time.monotonic()
            self._recovered()
            next_cleanup = time.monotonic()
            next_broker_check = time.monotonic() + self.settings.relay_broker_check_seconds
            while not self._stopping:
                if time.monotonic() >= next_broker_check:  # a broker can lose what it holds at any time
                    await self.rebuild.check(conn)
                    next_broker_check = time.monotonic() + self.settings.relay_broker_check_seconds
                while await self._publish_batch(conn):
                    pass
                if time.monotonic() >= next_cleanup:  # retention: small batches, once a minute
                    await conn.execute(DELETE_EXPIRED, self.settings.outbox_retention_days * 86400)
                    next_cleanup = time.monotonic() + 60
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.outbox_poll_interval_s)
            await self.drain(conn)
            await self.rebuild.record_on_stop(conn)
        finally:
            self.is_leader = False
            await conn.close()

    async def drain(self, conn: asyncpg.Connection) -> None:
        """Publish whatever is still unsent (graceful stop)."""
        while await self._publish_batch(conn):
            pass

    async def _publish_batch(self, conn: asyncpg.Connection) -> bool:
        """Publish the oldest unsent rows and mark them sent once the broker acknowledged them all.

        The rows go out as one record batch per partition (create_batch/send_batch) rather than one
        send() and one future each: per event, send() cost several times what the record itself
        does (pure-Python murmur2, a future, accumulator bookkeeping). Partitions are chosen as
        send() chooses them, so a key stays on its partition; a partition's rows keep their id
        order within and across its batches, so events of one key leave in the order written."""
        started = time.perf_counter()
        rows = await conn.fetch(CLAIM_UNSENT, self.settings.outbox_batch_size)
        if not rows:
            return False
        batches = await self._record_batches(rows)
        crash_point(RELAY_BEFORE_PUBLISH)
        futures = [
            await self.producer.send_batch(batch.builder, batch.tp.topic, partition=batch.tp.partition) for batch in batches
        ]
        acks = await asyncio.gather(*futures)  # every batch acknowledged before a row is marked
        crash_point(RELAY_AFTER_PUBLISH)
        ids: list[int] = []
        partitions: list[int] = []
        offsets: list[int] = []
        for batch, ack in zip(batches, acks, strict=True):
            ids += batch.ids
            partitions += [batch.tp.partition] * len(batch.ids)
            offsets += range(ack.offset, ack.offset + len(batch.ids))  # a batch's records take consecutive offsets
        await conn.execute(MARK_SENT, ids, partitions, offsets, self.cluster_id)
        self.published += len(rows)
        metrics.RELAY_PUBLISH_SECONDS.observe(time.perf_counter() - started)
        metrics.RELAY_BATCH_EVENTS.observe(len(rows))
        metrics.count_by_type(metrics.EVENTS_PUBLISHED, (row["event_type"] for row in rows))
        return len(rows) == self.settings.outbox_batch_size

    async def _record_batches(self, rows: list[asyncpg.Record]) -> list[_RecordBatch]:
        """The rows as record batches, in id order per partition; a full batch is followed by another."""
        batches: list[_RecordBatch] = []
        open_batches: dict[TopicPartition, _RecordBatch] = {}
        partition_of: dict[tuple[str, bytes], int] = {}
        trace_ids: dict[str, str] = {}
        producer = self.service.encode()  # lets a consumer skip its own service's events unread
        for row in rows:
            topic, key = row["topic"], row["key"].encode()
            partition = partition_of.get((topic, key))
            if partition is None:
                partition = partition_of[topic, key] = await self._partition(topic, key)
            event_id, correlation_id = row["event_id"], row["correlation_id"]
            trace_id = trace_ids.get(correlation_id)
            if trace_id is None:
                trace_id = trace_ids[correlation_id] = _trace_id(correlation_id)
            headers = [
                ("event_type", row["event_type"].encode()),
                ("event_id", str(event_id).encode()),
                ("producer", producer),
                ("traceparent", f"00-{trace_id}-{event_id.hex[:16]}-01".encode()),
            ]
            value = row["envelope"].encode()
            tp = TopicPartition(topic, partition)
            batch = open_batches.get(tp)
            appended = batch.builder.append(timestamp=None, key=key, value=value, headers=headers) if batch else None
            if batch is None or appended is None:  # none open yet, or full: a new one (its first record always fits)
                batch = open_batches[tp] = _RecordBatch(tp, self.producer.create_batch())
                batches.append(batch)
                appended = batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
            if appended.size > self.settings.kafka_max_request_size:  # what send() refuses, refused here too
                raise MessageSizeTooLargeError(f"outbox row {row['id']} is {appended.size} bytes as a record")
            batch.ids.append(row["id"])
        return batches

    async def _partition(self, topic: str, key: bytes) -> int:
        """The partition send() would pick for the key: the producer's default partitioner
        (murmur2 of the key over all partitions, sorted by id)."""
        partitions = sorted(await self.producer.partitions_for(topic))
        return int(_PARTITIONER(key, partitions, partitions))

@dataclass
class _RecordBatch:
    """One record batch for a partition and the outbox ids of its records, in order."""

    tp: TopicPartition
    builder: BatchBuilder
    ids: list[int] = field(default_factory=list)


def _trace_id(correlation_id: str) -> str:
    """W3C trace id derived from the correlation id, so one chain shares one trace id (the
    correlation id comes from the claim query: parsing each envelope here cost ~5 µs an event)."""
    return hashlib.md5(correlation_id.encode(), usedforsecurity=False).hexdigest()
