"""Rebuilding a broker that lost what it held, from the outbox: which retained rows to publish again
(only those some consumer group had not consumed), and the consumed watermarks that decide it.

The databases are the system of record: the embedded broker forgets everything when it stops, and a
real cluster can lose a topic. The leading relay checks at lead start and every
`relay_broker_check_seconds`; the requeued rows are then published by the relay like any other."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import Stream
from shared.settings import SUBSCRIPTIONS, Settings

from .offsets import HighwaterProbe, consumed_offsets

log = logging.getLogger("bus.relay")

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


@dataclass
class BrokerRebuild:
    """What one service's leading relay knows about the broker it publishes to: its cluster id, the
    highest offset sent per partition, and the consumed watermarks last recorded."""

    service: str
    settings: Settings
    # Consumer group -> the streams it reads: whose committed offsets make the consumed watermark.
    subscriptions: Mapping[str, tuple[Stream, ...]] = field(default_factory=lambda: SUBSCRIPTIONS)
    cluster_id: str = ""
    # Highest offset recorded per partition during this lead, and when the outbox was last read for it.
    _last_sent: dict[TopicPartition, int] = field(default_factory=dict)
    _offsets_read_at: datetime | None = None
    # Consumed watermarks last written for self.cluster_id (unchanged ones are not written again).
    _watermarks: dict[TopicPartition, int] = field(default_factory=dict)

    async def check(self, conn: asyncpg.Connection, lead_start: bool = False) -> None:
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

    async def record_on_stop(self, conn: asyncpg.Connection) -> None:
        """Once more on a graceful stop: the devstack drains before it stops the services, so the
        watermarks now say everything sent was consumed and the next broker gets nothing again."""
        try:
            await asyncio.wait_for(self.check(conn), 5.0)
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
