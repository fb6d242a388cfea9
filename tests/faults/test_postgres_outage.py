"""PostgreSQL stopped for about five seconds in the middle of the flow, then started again: clients
get 503s (with Retry-After) or connection errors and retry, never a 500, and afterwards every service
agrees on every line."""

from __future__ import annotations

import asyncio
from collections import Counter

from faults.faultstack import FaultStack
from faults.flow import Flow, FlowConfig
from faults.scenario import report, run_scenario

OUTAGE_S = 5.0


async def stop_postgres_a_while(stack: FaultStack, flow: Flow) -> None:
    await asyncio.sleep(1.0)
    await stack.stop_postgres()
    try:
        await asyncio.sleep(OUTAGE_S)
    finally:
        await stack.start_postgres()


async def test_a_postgres_outage_costs_time_not_promises(fault_stack) -> None:
    record, problems = await run_scenario(fault_stack, FlowConfig(seed=31, duration_s=8), stop_postgres_a_while, label="pg")
    server_errors = Counter(f"{e.method} {e.kind}" for e in record.exchanges if 500 in e.statuses_seen)
    if server_errors:
        problems.append(f"requests answered 500 during the outage (want 503 + Retry-After): {dict(server_errors)}")
    assert not problems, report(problems)
