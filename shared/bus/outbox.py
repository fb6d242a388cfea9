"""The unit of work: one database transaction in which a service changes its state and writes the
events it emits to the outbox, so both commit or neither does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import Envelope, Event, new_event_id, utc_now
from shared.settings import Settings

INSERT_OUTBOX = text(
    "INSERT INTO outbox (event_id, event_type, topic, key, envelope) "
    "VALUES (:event_id, :event_type, :topic, :key, CAST(:envelope AS jsonb))"
)


@dataclass
class UnitOfWork:
    session: AsyncSession
    producer: str
    settings: Settings
    cause: Envelope | None = None
    pending: list[tuple[Envelope, str, str]] = field(default_factory=list)

    def emit(self, event: Event, correlation_id: str | None = None) -> Envelope:
        """Queue an event for the outbox; it is written in this transaction, published after it."""
        # Built without re-validation: every field comes from a validated event or from here.
        envelope = Envelope.model_construct(
            event_id=new_event_id(),
            occurred_at=utc_now(),
            event_type=event.event_type,
            schema_version=event.schema_version,
            correlation_id=correlation_id or (self.cause.correlation_id if self.cause else event.key),
            causation_id=str(self.cause.event_id) if self.cause else None,
            producer=self.producer,
            payload=event.model_dump(mode="json"),
        )
        self.pending.append((envelope, self.settings.topic(event.stream), event.key))
        return envelope

    async def flush_events(self) -> None:
        """Write queued events in one round trip (executemany), keeping their emission order."""
        if not self.pending:
            return
        rows = [
            {
                "event_id": envelope.event_id,
                "event_type": envelope.event_type,
                "topic": topic,
                "key": key,
                "envelope": envelope.model_dump_json(),  # pydantic-core serializes ~3x faster than json.dumps(model_dump())
            }
            for envelope, topic, key in self.pending
        ]
        self.pending.clear()
        await self.session.execute(INSERT_OUTBOX, rows)


@asynccontextmanager
async def unit_of_work(
    sessions: async_sessionmaker[AsyncSession], producer: str, settings: Settings, cause: Envelope | None = None
) -> AsyncIterator[UnitOfWork]:
    """Commit state and outbox together on success; roll both back on any exception."""
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session=session, producer=producer, settings=settings, cause=cause)
        yield uow
        await uow.flush_events()
