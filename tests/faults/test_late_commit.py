"""A writer whose transaction commits late: an order placed through orders' own code path, in this
process, holds its transaction open after writing its outbox row while the flow commits and publishes
later rows; once it commits, the relay must still publish it and the others must act on it."""

from __future__ import annotations

import time
from uuid import uuid4

from faults.client import Exchange
from faults.faultstack import FaultStack
from faults.flow import Flow, FlowConfig, order_body
from faults.scenario import report, run_scenario
from sqlalchemy import text
from support import eventually

from services.orders.handlers import place_order
from services.orders.schemas import OrderCreate
from shared.bus.outbox import unit_of_work
from shared.db import create_engine, session_factory

# Rows published since ours was written (by when they were sent, not by id: the id order is the
# very thing a late commit breaks).
ROWS_SENT_SINCE = text("SELECT count(*) FROM outbox WHERE sent_at > :written_at")
OVERTAKEN_BY = 5  # rows that must be published while ours is still uncommitted


async def place_order_committing_late(stack: FaultStack, flow: Flow) -> None:
    engine = create_engine(stack.settings.service_database_url("orders"), pool_size=2)
    sessions = session_factory(engine)
    body = order_body([{"sku": flow.record.skus[0], "qty": 2}], partial_allowed=True, tier="standard")
    try:
        started = time.monotonic()
        async with unit_of_work(sessions, "orders", stack.settings) as uow:
            placement = await place_order(uow, OrderCreate.model_validate(body), f"late-{uuid4().hex}")
            await uow.flush_events()  # our outbox row exists (its id is taken), uncommitted
            written_at = (await uow.session.execute(text("SELECT clock_timestamp()"))).scalar_one()

            async def overtaken() -> bool:
                async with sessions() as other:
                    return (await other.execute(ROWS_SENT_SINCE, {"written_at": written_at})).scalar_one() >= OVERTAKEN_BY

            assert await eventually(overtaken, timeout=30), f"no {OVERTAKEN_BY} later outbox rows were sent meanwhile"
        answer = placement.response
        flow.record.exchanges.append(Exchange("place", "orders", "POST", "/v1/orders", body, 201, answer,
                                              started, time.monotonic(), 1, [201]))
    finally:
        await engine.dispose()


async def test_a_late_committing_outbox_row_is_still_published(fault_stack) -> None:
    _, problems = await run_scenario(fault_stack, FlowConfig(seed=41, duration_s=4), place_order_committing_late, label="late")
    assert not problems, report(problems)
