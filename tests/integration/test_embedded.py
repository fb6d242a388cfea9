"""The embedded PostgreSQL and Tansu servers start, serve over TCP, stop, and refuse port clashes."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shared.devstack.embedded import (
    DevstackError,
    EmbeddedBroker,
    EmbeddedPostgres,
    ensure_databases,
    ensure_topics,
    port_is_free,
)

# Not pytest's tmp_path: /tmp/pytest-of-root is 0700, which the dedicated postgres user cannot traverse.
BASE = Path(__file__).resolve().parents[2] / ".devstack" / "test-embedded"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = BASE / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.asyncio
async def test_postgres_databases_survive_restart(workdir: Path) -> None:
    pg = EmbeddedPostgres(data_dir=workdir / "pgdata", port=free_port())
    try:
        pg.start()
        pg.start()  # idempotent: reuses the running server
        await ensure_databases(pg.admin_url(), ["emb_a", "emb_b"])
        await ensure_databases(pg.admin_url(), ["emb_a"])  # already there: no error
        for name in ("emb_a", "emb_b"):
            conn = await asyncpg.connect(pg.url(name))
            try:
                await conn.execute("CREATE TABLE t (v text)")
                await conn.execute("INSERT INTO t VALUES ($1)", name)
                assert await conn.fetchval("SELECT current_database()") == name
            finally:
                await conn.close()
        pg.stop()
        pg.stop()  # not running: no error
        assert port_is_free("127.0.0.1", pg.port)
        # a stale pid file naming a live non-postgres process (us) must be ignored, not signalled
        (pg.data_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{pg.data_dir}\n")
        pg.start()
        for name in ("emb_a", "emb_b"):
            conn = await asyncpg.connect(pg.url(name))
            try:
                assert await conn.fetchval("SELECT v FROM t") == name
            finally:
                await conn.close()
    finally:
        pg.stop()
    assert port_is_free("127.0.0.1", pg.port)


@pytest.mark.skipif(os.geteuid() != 0, reason="the traversal check applies when running as root")
def test_postgres_refuses_untraversable_dir(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(DevstackError, match="cannot traverse"):
        EmbeddedPostgres(data_dir=locked / "pgdata", port=free_port()).start()


@pytest.mark.asyncio
async def test_broker_topics_produce_consume(workdir: Path) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=workdir / "tansu.log")
    broker.start()
    try:
        assert broker.alive() and broker.active_cluster_id.startswith("devstack-")
        with pytest.raises(DevstackError):
            EmbeddedBroker(port=broker.port).start()
        topics = ["emb.orders", "emb.stock"]
        await ensure_topics(broker.bootstrap_servers, topics, partitions=3)
        await ensure_topics(broker.bootstrap_servers, topics, partitions=3)  # idempotent
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            described = await admin.describe_topics(topics)
            assert sorted(len(t["partitions"]) for t in described) == [3, 3]
        finally:
            await admin.close()

        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait("emb.orders", b"hello", key=b"k1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            "emb.orders",
            bootstrap_servers=broker.bootstrap_servers,
            group_id="emb-test",
            session_timeout_ms=6000,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            msg = await consumer.getone()
            assert (msg.key, msg.value) == (b"k1", b"hello")
            await consumer.commit()
        finally:
            await consumer.stop()
    finally:
        broker.stop()
    assert not broker.alive()
    assert port_is_free(broker.host, broker.port)
