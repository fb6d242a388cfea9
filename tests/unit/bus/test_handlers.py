"""A service's handlers, keyed by event class: a batch is applied in runs that keep the events'
order, the subscription follows from the classes, and a service whose handlers and the
deployment's table disagree does not start."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast
from uuid import uuid4

import pytest

from services.allocator.app import SPEC as ALLOCATOR
from services.inventory.app import SPEC as INVENTORY
from services.notifier.app import SPEC as NOTIFIER
from services.orders.app import SPEC as ORDERS
from shared.bus.handlers import Handlers, each, runs
from shared.bus.outbox import UnitOfWork
from shared.events import Envelope, EtaChanged, Event, LineCancelled, StockReserved, Stream
from shared.service import ServiceSpec
from shared.settings import SUBSCRIPTIONS


def item(event: Event) -> tuple[Envelope, Event]:
    envelope = Envelope(event_type=event.event_type, correlation_id="c", producer="t", payload=event.model_dump(mode="json"))
    return envelope, event


def reserved(line_no: int) -> tuple[Envelope, Event]:
    return item(StockReserved(order_id=uuid4(), line_no=line_no, sku="S", qty=1))


def cancelled(line_no: int) -> tuple[Envelope, Event]:
    return item(LineCancelled(order_id=uuid4(), line_no=line_no, sku="S", qty_cancelled=1, reason="customer_request"))


class FakeUow:
    cause: Envelope | None = None


def test_a_batch_splits_into_runs_of_one_type_in_their_order() -> None:
    batch = [reserved(1), reserved(2), cancelled(3), reserved(4)]
    assert [[e.line_no for _, e in run] for run in runs(batch)] == [[1, 2], [3], [4]]  # type: ignore[attr-defined]
    assert runs([]) == []


async def test_handlers_by_class_get_each_run_in_batch_order() -> None:
    calls: list[tuple[str, list[int]]] = []

    def recorder(name: str) -> Any:
        async def handle(run: Sequence[tuple[Envelope, Any]], uow: UnitOfWork) -> None:
            calls.append((name, [event.line_no for _, event in run]))
        return handle

    handlers = Handlers.by_class({StockReserved: recorder("reserved"), LineCancelled: recorder("cancelled")})
    await handlers.apply([reserved(1), reserved(2), cancelled(3), reserved(4)], cast(UnitOfWork, FakeUow()))
    assert calls == [("reserved", [1, 2]), ("cancelled", [3]), ("reserved", [4])]
    assert handlers.event_types == {"StockReserved", "LineCancelled"}
    assert handlers.streams == (Stream.ORDERS, Stream.STOCK)  # in the order Stream declares them


async def test_a_one_event_handler_names_each_event_as_the_cause_of_what_it_emits() -> None:
    seen: list[tuple[int, Envelope | None]] = []

    async def handle(event: StockReserved, uow: UnitOfWork) -> None:
        seen.append((event.line_no, uow.cause))

    batch = [reserved(1), reserved(2)]
    uow = FakeUow()
    await each(handle)(batch, cast(UnitOfWork, uow))
    assert seen == [(1, batch[0][0]), (2, batch[1][0])] and uow.cause is None


def test_every_service_subscribes_to_exactly_the_streams_its_handlers_read() -> None:
    for spec in (ORDERS, INVENTORY, ALLOCATOR, NOTIFIER):
        assert spec.handlers is not None
        assert set(spec.handlers.streams) == set(SUBSCRIPTIONS[spec.name]), spec.name


def test_a_service_whose_handlers_read_a_stream_the_table_does_not_list_does_not_start() -> None:
    async def handle(run: Sequence[tuple[Envelope, Any]], uow: UnitOfWork) -> None:
        return None

    eta = EtaChanged(order_id=uuid4(), line_no=1, sku="S", previous_date=None, new_date=datetime.now(UTC).date(), reason="x")
    assert eta.stream is Stream.ALLOCATIONS and Stream.ALLOCATIONS not in SUBSCRIPTIONS["allocator"]
    with pytest.raises(ValueError, match="allocator: its handlers read"):
        ServiceSpec(name="allocator", title="A", routers=[], handlers=Handlers.by_class({EtaChanged: handle}))
