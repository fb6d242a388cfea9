"""kill -9 of every process mid-flow (the services, the broker and PostgreSQL's postmaster), then the
stack started again the way `make run` starts it: PostgreSQL recovers, a new broker is filled from the
outboxes, and every promise made before the crash holds."""

from __future__ import annotations

import asyncio

from faults.faultstack import FaultStack
from faults.flow import Flow, FlowConfig
from faults.scenario import report, run_scenario


async def kill_everything_and_run_again(stack: FaultStack, flow: Flow) -> None:
    await asyncio.sleep(2.0)
    lost = stack.broker.active_cluster_id if stack.broker else None
    await stack.crash_everything()
    await asyncio.sleep(0.5)
    await stack.start()  # what `make run` does: servers, databases, topics, migrations, services
    assert stack.broker is not None and stack.broker.active_cluster_id != lost


async def test_kill_everything_and_start_again_loses_nothing(fault_stack) -> None:
    config = FlowConfig(seed=71, duration_s=5)
    _, problems = await run_scenario(fault_stack, config, kill_everything_and_run_again, label="all", settle_timeout=120)
    assert not problems, report(problems)
