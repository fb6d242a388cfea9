"""The allocator frozen (SIGSTOP) for longer than its consumer session timeout while orders and
receipts keep coming, then thawed: it is evicted from its group, rejoins and catches up, and no unit
reaches the shelf while a line waits for it."""

from __future__ import annotations

import asyncio

from faults.faultstack import FaultStack
from faults.flow import Flow, FlowConfig
from faults.scenario import report, run_scenario


async def freeze_allocator(stack: FaultStack, flow: Flow) -> None:
    await asyncio.sleep(0.5)
    stack.pause("allocator")
    try:
        await asyncio.sleep(stack.settings.kafka_session_timeout_ms / 1000 + 2)
    finally:
        stack.resume("allocator")


async def test_a_stalled_allocator_catches_up_and_serves_waiting_lines_first(fault_stack) -> None:
    # Receipts come often while shortfalls queue up unread behind the stall. The flow ends before
    # the thaw: orders placed after it would take units wrongly shelved during the catch-up, and
    # the check, which reads the state at quiescence, would no longer see them on the shelf.
    config = FlowConfig(seed=21, duration_s=8, skus=4, receipt_every_s=0.4)
    _, problems = await run_scenario(fault_stack, config, freeze_allocator, label="stall")
    assert not problems, report(problems)
