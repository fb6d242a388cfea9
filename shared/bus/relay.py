"""The outbox relay: publishes committed outbox rows to Kafka in id order and marks them sent only
after the broker acknowledged them; republishes retained rows when the broker lost them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from shared.settings import Settings, asyncpg_dsn

from .crashpoints import RELAY_AFTER_PUBLISH, RELAY_BEFORE_PUBLISH, crash_point
from .offsets import HighwaterProbe
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
# Rows whose copy on the broker is gone: everything retained that was sent to another cluster.
REQUEUE_OTHER_CLUSTER = "UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL AND cluster_id IS DISTINCT FROM $1"
REQUEUE_TOPIC = "UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL AND topic = $1"
LAST_OFFSETS = 'SELECT topic, partition, max("offset") FROM outbox WHERE sent_at IS NOT NULL GROUP BY topic, partition'
# The periodic check reads only rows marked since its previous read (outbox_sent_at index).
LAST_OFFSETS_SINCE = 'SELECT topic, partition, max("offset") FROM outbox WHERE sent_at >= $1 GROUP BY topic, partition'
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
    published: int = 0
    is_leader: bool = False
    cluster_id: str = ""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    # Highest offset recorded per partition during this lead, and when the outbox was last read for it.
    _last_sent: dict[TopicPartition, int] = field(default_factory=dict)
    _offsets_read_at: datetime | None = None

    @property
    def lock_id(self) -> int:
        return zlib.crc32(f"outbox-relay:{self.service}".encode())

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception:  # database or broker trouble: log, back off, take the lock again
                log.exception("outbox relay of %s failed; restarting in 1 s", self.service)
                self.is_leader = False
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _lead(self) -> None:
        # Custom plans: a generic plan cached while the outbox was nearly empty (a seq scan and a
        # sort) would be kept through a burst and make every claim read the whole outbox.
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url), server_settings={"plan_cache_mode": "force_custom_plan"})
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_id):
                if self._stopping:
                    return
                await asyncio.sleep(self.settings.outbox_poll_interval_s)
            self.is_leader = True
            # Asked afresh on every (re)start of the lead: a restarted broker has a new identity.
            self.cluster_id = await broker_cluster_id(self.settings)
            # LISTEN is a wake-up hint on this dedicated connection; the poll below is the fallback.
            await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
            await self._heal_lost_broker(conn)
            next_cleanup = time.monotonic()
            next_broker_check = time.monotonic() + self.settings.relay_broker_check_seconds
            while not self._stopping:
                if time.monotonic() >= next_broker_check:  # a broker can lose what it holds at any time
                    await self._recheck_broker(conn)
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

    async def _recheck_broker(self, conn: asyncpg.Connection) -> None:
        """While leading (every `relay_broker_check_seconds`, between batches): a broker restarted
        under us answers with a new cluster id, a deleted or truncated topic ends before offsets
        we recorded; heal as at lead start. Cheap on an unchanged cluster: no other-cluster scan,
        only rows sent since the previous check are read, one small fetch per partition."""
        cluster_id = await broker_cluster_id(self.settings)
        changed = cluster_id != self.cluster_id
        if changed:
            log.warning("broker under the %s relay changed: cluster %s, was %s", self.service, cluster_id, self.cluster_id)
            self.cluster_id = cluster_id
        await self._heal_lost_broker(conn, incremental=not changed)

    async def _heal_lost_broker(self, conn: asyncpg.Connection, incremental: bool = False) -> None:
        """The databases are the system of record: a broker that forgot what we sent (a restarted
        in-memory broker, a deleted or truncated topic) gets the retained rows again. The
        consumers' inboxes make the repeats harmless."""
        if not incremental:  # rows of this lead all carry self.cluster_id: only a new cluster needs the scan
            requeued = await conn.execute(REQUEUE_OTHER_CLUSTER, self.cluster_id)
            if requeued != "UPDATE 0":
                log.warning(
                    "broker %s is new to %s: republishing retained outbox rows (%s)", self.cluster_id, self.service, requeued
                )
        last_offsets = await self._last_offsets(conn, incremental)
        probe = HighwaterProbe(self.settings.kafka_bootstrap_servers)
        try:
            existing = set(await probe.partitions({tp.topic for tp in last_offsets}))
            ends = await probe.highwaters(tp for tp in last_offsets if tp in existing)
        finally:
            await probe.stop()
        lost_topics = {tp.topic for tp, last in last_offsets.items() if ends.get(tp, 0) <= last}
        for topic in sorted(lost_topics):  # a deleted or truncated topic: its end is behind what we sent
            log.warning("topic %s lost messages %s published: republishing its retained rows", topic, self.service)
            await conn.execute(REQUEUE_TOPIC, topic)
            self._last_sent = {tp: offset for tp, offset in self._last_sent.items() if tp.topic != topic}

    async def _last_offsets(self, conn: asyncpg.Connection, incremental: bool) -> dict[TopicPartition, int]:
        """The highest offset recorded per partition: the whole outbox when the lead starts, then
        only rows marked sent since the previous read (a minute's overlap covers clock steps)."""
        read_at: datetime = await conn.fetchval("SELECT now()")
        if incremental and self._offsets_read_at is not None:
            for topic, partition, offset in await conn.fetch(LAST_OFFSETS_SINCE, self._offsets_read_at - timedelta(minutes=1)):
                tp = TopicPartition(topic, partition)
                self._last_sent[tp] = max(offset, self._last_sent.get(tp, offset))
        else:
            self._last_sent = {TopicPartition(r[0], r[1]): r[2] for r in await conn.fetch(LAST_OFFSETS)}
        self._offsets_read_at = read_at
        return dict(self._last_sent)


async def broker_cluster_id(settings: Settings) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        return str((await admin.describe_cluster()).get("cluster_id") or "")
    finally:
        await admin.close()


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
