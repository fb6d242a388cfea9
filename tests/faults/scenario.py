"""One fault scenario end to end: a seeded flow runs while the fault is injected and healed, then
the stack is left to settle and the checker reads everything. Reusable for any fault."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from faults.check import REAL_WORK, check
from faults.faultstack import FaultStack
from faults.flow import Flow, FlowConfig, FlowRecord

log = logging.getLogger("faults")

Fault = Callable[[FaultStack, Flow], Awaitable[None]]
"""Breaks something while the flow runs and heals it before returning (the flow keeps going)."""
Arm = Callable[[FaultStack], Awaitable[None]]
"""Prepares a fault before the flow starts (e.g. restarts a service armed with a crash point)."""


async def run_scenario(
    stack: FaultStack, config: FlowConfig, fault: Fault | None = None, label: str = "flow",
    real_work: tuple[str, ...] = REAL_WORK, settle_timeout: float = 90.0, arm: Arm | None = None,
) -> tuple[FlowRecord, list[str]]:
    """Returns the flow's record and the checker's problems (empty when every promise held)."""
    started = time.monotonic()
    await stack.wait_ready()
    flow = Flow(stack, config, label)
    await flow.setup()
    await stack.wait_quiescent(timeout=settle_timeout)  # the initial stock is on the shelf
    if arm is not None:
        await arm(stack)
    running = asyncio.create_task(flow.run())
    try:
        if fault is not None:
            await fault(stack, flow)
    finally:
        record = await running
    await heal(stack)
    flowed = time.monotonic()
    await stack.wait_quiescent(timeout=settle_timeout)
    settled = time.monotonic()
    problems = await check(stack, record, real_work)
    log.info("%s: flow and fault %.1f s, settling %.1f s, check %.1f s",
             label, flowed - started, settled - flowed, time.monotonic() - settled)
    return record, problems


async def heal(stack: FaultStack) -> None:
    """Let the stack restart whatever is dead (Devstack.heal, once it exists), then wait for it."""
    healer = getattr(stack, "heal", None)
    if healer is not None:
        done = await healer()
        if done:
            log.warning("heal: %s", done)
    await stack.wait_ready()


def report(problems: list[str]) -> str:
    return f"{len(problems)} problems:\n" + "\n".join(problems)
