"""kill -9 of the broker mid-flow: the stack's supervision (Devstack.heal) restarts it with its
services, the relays republish what the consumers had not consumed, clients retry through the gap,
and afterwards no event is lost or applied twice and every service agrees on every line."""

from __future__ import annotations

import asyncio
import re

from faults.faultstack import FaultStack
from faults.flow import Flow, FlowConfig
from faults.scenario import report, run_scenario

from shared.settings import SERVICES


async def kill_the_broker(stack: FaultStack, flow: Flow) -> None:
    await asyncio.sleep(2.0)
    lost = stack.broker.active_cluster_id if stack.broker else None
    stack.kill_broker()
    done = await stack.heal()
    assert done and stack.broker is not None and stack.broker.active_cluster_id != lost, done


async def test_a_lost_broker_is_rebuilt_from_the_databases(fault_stack) -> None:
    _, problems = await run_scenario(fault_stack, FlowConfig(seed=61, duration_s=6), kill_the_broker, label="broker")
    assert not problems, report(problems)
    # An operator reads what each relay gave back to the new broker.
    logged = {name: re.findall(r"republishing (\d+) of (\d+) retained outbox rows", (fault_stack.root / "logs" / f"{name}.log")
                               .read_text(errors="replace")) for name in SERVICES}
    assert all(logged.values()), logged
    assert any(int(republished) > 0 for found in logged.values() for republished, _ in found), logged
