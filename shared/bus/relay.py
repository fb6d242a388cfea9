"""The outbox relay: publishes committed outbox rows to Kafka in id order and marks them sent only
after the broker acknowledged them; republishes the retained rows a lost broker's consumers had not
consumed yet (consumed watermarks, recorded while the broker was alive)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from shared.events import Stream
from shared.settings import SUBSCRIPTIONS, Settings, asyncpg_dsn

from .consumer import is_unreachable
from .crashpoints import RELAY_AFTER_PUBLISH, RELAY_BEFORE_PUBLISH, crash_point
from .offsets import HighwaterProbe, consumed_offsets
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
# Rows whose copy on the broker is gone and that a consumer group may not have applied: sent to
# another cluster at or after that cluster's consumed watermark for their partition, or with none
# recorded. Returns how many were requeued and how many other-cluster rows were retained (the
# outer SELECT sees the snapshot before the UPDATE).
REQUEUE_OTHER_CLUSTER = """
    WITH requeued AS (
        UPDATE outbox SET sent_at = NULL
        WHERE sent_at IS NOT NULL AND cluster_id IS DISTINCT FROM $1 AND NOT EXISTS (
            SELECT 1 FROM relay_watermark w
            WHERE w.cluster_id = outbox.cluster_id AND w.topic = outbox.topic AND w.partition = outbox.partition
              AND outbox."offset" < w.consumed)
        RETURNING 1)
    SELECT (SELECT count(*) FROM requeued),
           (SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL AND cluster_id IS DISTINCT FROM $1)
"""
# A partition truncated on the same cluster: its rows at or after the watermark go out again ...
REQUEUE_PARTITION = """
    UPDATE outbox SET sent_at = NULL
    WHERE sent_at IS NOT NULL AND cluster_id = $1 AND topic = $2 AND partition = $3 AND "offset" >= $4
"""
# ... and the consumed ones, with the watermark, move to a retired cluster id: their offsets name
# messages of the lost log, which must neither count as "the last offset sent" on the new one
# (every check would find the partition truncated again) nor be republished by a later cluster change.
RETIRE_PARTITION = """
    WITH moved AS (
        UPDATE outbox SET cluster_id = $4 WHERE sent_at IS NOT NULL AND cluster_id = $1 AND topic = $2 AND partition = $3
        RETURNING 1),
    watermark AS (
        UPDATE relay_watermark SET cluster_id = $4 WHERE cluster_id = $1 AND topic = $2 AND partition = $3)
    SELECT count(*) FROM moved
"""
LAST_OFFSETS = """
    SELECT topic, partition, max("offset") FROM outbox WHERE sent_at IS NOT NULL AND cluster_id = $1 GROUP BY topic, partition
"""
# The periodic check reads only rows marked since its previous read (outbox_sent_at index).
LAST_OFFSETS_SINCE = """
    SELECT topic, partition, max("offset") FROM outbox WHERE sent_at >= $1 AND cluster_id = $2 GROUP BY topic, partition
"""
# Never lowered: a lower reading can only come from a broker that is not the one it is recorded for.
RECORD_WATERMARKS = """
    INSERT INTO relay_watermark (cluster_id, topic, partition, consumed)
    SELECT $1, s.topic, s.partition, s.consumed FROM unnest($2::text[], $3::int[], $4::bigint[]) AS s(topic, partition, consumed)
    ON CONFLICT (cluster_id, topic, partition)
    DO UPDATE SET consumed = greatest(relay_watermark.consumed, excluded.consumed), updated_at = now()
"""
# Watermarks of clusters no retained row was sent to any more (run at lead start, after the requeue).
DELETE_UNUSED_WATERMARKS = """
    DELETE FROM relay_watermark WHERE cluster_id <> $1
    AND cluster_id NOT IN (SELECT DISTINCT cluster_id FROM outbox WHERE sent_at IS NOT NULL AND cluster_id IS NOT NULL)
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
    published: int = 0
    is_leader: bool = False
    cluster_id: str = ""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    # Highest offset recorded per partition during this lead, and when the outbox was last read for it.
    _last_sent: dict[TopicPartition, int] = field(default_factory=dict)
    _offsets_read_at: datetime | None = None
    # Consumed watermarks last written for self.cluster_id (unchanged ones are not written again).
    _watermarks: dict[TopicPartition, int] = field(default_factory=dict)
    # When the current outage began (None while healthy), and when the current lead was established.
    _outage_since: float | None = None
    _led_since: float | None = None

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
            await self._check_broker(conn, lead_start=True)
            self._led_since = time.monotonic()
            self._recovered()
            next_cleanup = time.monotonic()
            next_broker_check = time.monotonic() + self.settings.relay_broker_check_seconds
            while not self._stopping:
                if time.monotonic() >= next_broker_check:  # a broker can lose what it holds at any time
                    await self._check_broker(conn)
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
            await self._record_on_stop(conn)
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
        return len(rows) == self.settings.outbox_batch_size

    async def _record_batches(self, rows: list[asyncpg.Record]) -> list[_RecordBatch]:
        """The rows as record batches, in id order per partition; a full batch is followed by another."""
        batches: list[_RecordBatch] = []
        open_batches: dict[TopicPartition, _RecordBatch] = {}
        partition_of: dict[tuple[str, bytes], int] = {}
        trace_ids: dict[str, str] = {}
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

    async def _check_broker(self, conn: asyncpg.Connection, lead_start: bool = False) -> None:
        """At lead start and every `relay_broker_check_seconds` between batches: a broker restarted
        under us answers with a new cluster id, a deleted or truncated partition ends before offsets
        we recorded; heal, then record how far the consumer groups got. Cheap on an unchanged
        cluster: no other-cluster scan, only rows sent since the previous check are read, one small
        fetch per partition and one offsets request per consumer group."""
        async with _admin_client(self.settings) as admin:
            cluster_id = await _cluster_id(admin)
            changed = cluster_id != self.cluster_id
            if changed and not lead_start:
                log.warning("broker under the %s relay changed: cluster %s, was %s", self.service, cluster_id, self.cluster_id)
            if changed or lead_start:
                self.cluster_id = cluster_id
                self._watermarks = {}
            ends = await self._heal_lost_broker(conn, incremental=not (changed or lead_start))
            await self._record_watermarks(conn, admin, ends)

    async def _record_on_stop(self, conn: asyncpg.Connection) -> None:
        """Once more on a graceful stop: the devstack drains before it stops the services, so the
        watermarks now say everything sent was consumed and the next broker gets nothing again."""
        try:
            await asyncio.wait_for(self._check_broker(conn), 5.0)
        except Exception as error:  # the broker may be the reason we stop: the last check's numbers stand
            log.warning("outbox relay of %s could not record consumed watermarks on stop: %r", self.service, error)

    async def _heal_lost_broker(self, conn: asyncpg.Connection, incremental: bool = False) -> dict[TopicPartition, int]:
        """The databases are the system of record: a broker that forgot what we sent (a restarted
        in-memory broker, a deleted or truncated topic) gets the retained rows again, except those
        every consumer group had consumed before (the consumed watermarks). The consumers' inboxes
        make repeats harmless. Returns the highwater of every partition we sent to that still
        holds what we sent."""
        if not incremental:  # rows of this lead all carry self.cluster_id: only a new cluster needs the scan
            requeued, retained = await conn.fetchrow(REQUEUE_OTHER_CLUSTER, self.cluster_id)
            if retained:
                log.warning(
                    "broker %s is new to %s: republishing %d of %d retained outbox rows sent to earlier brokers"
                    " (not consumed by every consumer group before their broker was lost); %d consumed ones stay sent",
                    self.cluster_id, self.service, requeued, retained, retained - requeued,
                )
            await conn.execute(DELETE_UNUSED_WATERMARKS, self.cluster_id)
        last_offsets = await self._last_offsets(conn, incremental)
        probe = HighwaterProbe(self.settings.kafka_bootstrap_servers)
        try:
            existing = set(await probe.partitions({tp.topic for tp in last_offsets}))
            ends = await probe.highwaters(tp for tp in last_offsets if tp in existing)
        finally:
            await probe.stop()
        for tp in sorted(tp for tp, last in last_offsets.items() if ends.get(tp, 0) <= last):
            await self._heal_truncated(conn, tp, ends.get(tp, 0), last_offsets[tp])
            ends.pop(tp, None)
        return ends

    async def _heal_truncated(self, conn: asyncpg.Connection, tp: TopicPartition, end: int, last: int) -> None:
        """A partition of this cluster ends before an offset we recorded (deleted or truncated):
        republish its rows at or after the consumed watermark, retire the others with it."""
        watermark = await conn.fetchval(
            "SELECT consumed FROM relay_watermark WHERE cluster_id = $1 AND topic = $2 AND partition = $3",
            self.cluster_id, tp.topic, tp.partition,
        ) or 0
        retired = f"{self.cluster_id}/lost-{uuid.uuid4().hex[:8]}"
        async with conn.transaction():
            status = await conn.execute(REQUEUE_PARTITION, self.cluster_id, tp.topic, tp.partition, watermark)
            kept = await conn.fetchval(RETIRE_PARTITION, self.cluster_id, tp.topic, tp.partition, retired)
        log.warning(
            "topic %s lost messages %s published: partition %d ends at %d, below offset %d; republishing its rows"
            " at or after the consumed watermark %d (%s rows), %d consumed rows kept (as cluster %s)",
            tp.topic, self.service, tp.partition, end, last, watermark, status.split()[-1], kept, retired,
        )
        self._last_sent.pop(tp, None)
        self._watermarks.pop(tp, None)

    async def _record_watermarks(
        self, conn: asyncpg.Connection, admin: AIOKafkaAdminClient, ends: dict[TopicPartition, int]
    ) -> None:
        """Per partition we sent to, what every consumer group of the project has consumed, recorded
        for this cluster unless the broker changed while we asked."""
        if not ends:
            return
        readers = {group: {self.settings.topic(stream) for stream in streams} for group, streams in self.subscriptions.items()}
        consumed = await consumed_offsets(admin, readers, ends)
        if await _cluster_id(admin) != self.cluster_id:
            return  # the broker restarted while we read: these offsets are not the recorded cluster's
        changed = {tp: offset for tp, offset in consumed.items() if self._watermarks.get(tp) != offset}
        if changed:
            await conn.execute(
                RECORD_WATERMARKS, self.cluster_id, [tp.topic for tp in changed], [tp.partition for tp in changed],
                list(changed.values()),
            )
            self._watermarks.update(changed)

    async def _last_offsets(self, conn: asyncpg.Connection, incremental: bool) -> dict[TopicPartition, int]:
        """The highest offset recorded per partition on this cluster: the whole outbox when the lead
        starts, then only rows marked sent since the previous read (a minute's overlap covers clock steps)."""
        read_at: datetime = await conn.fetchval("SELECT now()")
        if incremental and self._offsets_read_at is not None:
            since = self._offsets_read_at - timedelta(minutes=1)
            for topic, partition, offset in await conn.fetch(LAST_OFFSETS_SINCE, since, self.cluster_id):
                tp = TopicPartition(topic, partition)
                self._last_sent[tp] = max(offset, self._last_sent.get(tp, offset))
        else:
            self._last_sent = {TopicPartition(r[0], r[1]): r[2] for r in await conn.fetch(LAST_OFFSETS, self.cluster_id)}
        self._offsets_read_at = read_at
        return dict(self._last_sent)


@contextlib.asynccontextmanager
async def _admin_client(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def _cluster_id(admin: AIOKafkaAdminClient) -> str:
    return str((await admin.describe_cluster()).get("cluster_id") or "")


async def broker_cluster_id(settings: Settings) -> str:
    async with _admin_client(settings) as admin:
        return await _cluster_id(admin)


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
