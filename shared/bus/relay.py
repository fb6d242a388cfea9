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
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.settings import Settings, asyncpg_dsn

from .offsets import HighwaterProbe
from .tables import OUTBOX_CHANNEL

log = logging.getLogger("bus.relay")

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
            while not self._stopping:
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
        rows = await conn.fetch(CLAIM_UNSENT, self.settings.outbox_batch_size)
        if not rows:
            return False
        futures = [
            await self.producer.send(
                row["topic"],
                value=row["envelope"].encode(),
                key=row["key"].encode(),
                headers=[
                    ("event_type", row["event_type"].encode()),
                    ("event_id", str(row["event_id"]).encode()),
                    ("traceparent", _traceparent(row["correlation_id"], row["event_id"]).encode()),
                ],
            )
            for row in rows
        ]
        metadata = await asyncio.gather(*futures)  # every send acknowledged before a row is marked
        await conn.execute(
            MARK_SENT,
            [row["id"] for row in rows],
            [m.partition for m in metadata],
            [m.offset for m in metadata],
            self.cluster_id,
        )
        self.published += len(rows)
        return len(rows) == self.settings.outbox_batch_size

    async def _heal_lost_broker(self, conn: asyncpg.Connection) -> None:
        """The databases are the system of record: a broker that forgot what we sent (a restarted
        in-memory broker, a deleted or truncated topic) gets the retained rows again. The
        consumers' inboxes make the repeats harmless."""
        requeued = await conn.execute(REQUEUE_OTHER_CLUSTER, self.cluster_id)
        if requeued != "UPDATE 0":
            log.warning("broker %s is new to %s: republishing retained outbox rows (%s)", self.cluster_id, self.service, requeued)
        last_offsets = {TopicPartition(r[0], r[1]): r[2] for r in await conn.fetch(LAST_OFFSETS)}
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


async def broker_cluster_id(settings: Settings) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        return str((await admin.describe_cluster()).get("cluster_id") or "")
    finally:
        await admin.close()


def _traceparent(correlation_id: str, event_id: UUID) -> str:
    """W3C traceparent derived from the correlation id, so one chain shares one trace id (the
    correlation id comes from the claim query: parsing each envelope here cost ~5 µs an event)."""
    trace_id = hashlib.md5(correlation_id.encode(), usedforsecurity=False).hexdigest()
    span_id = str(event_id).replace("-", "")[:16]
    return f"00-{trace_id}-{span_id}-01"
