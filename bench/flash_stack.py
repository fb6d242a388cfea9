"""The flash sale's stack between windows: stock put on the shelf, quiescence without the probe
that would load the next window, an idle stack, and a process's peak memory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import psutil

from bench.cpu import stack_processes
from shared.devstack.stack import Devstack
from shared.settings import SERVICES

SYSTEM = (*SERVICES, "postgres", "broker")  # the process groups whose CPU is the system's


def peak_rss_mb(process: psutil.Process) -> float:
    """The process's high-water resident set (VmHWM), or its current RSS where /proc has none."""
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float(process.memory_info().rss) / 2**20
    except (OSError, psutil.Error):
        return 0.0


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, over all cores: other work on a
    shared machine included. Guest time is inside user time already; steal is nobody's here."""
    times = psutil.cpu_times()
    busy = sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))
    return busy, busy + times.idle + getattr(times, "iowait", 0.0)


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return total


async def wait_idle(stack: Devstack, cores: float = 0.35, timeout_s: float = 90.0) -> tuple[float, float]:
    """Until the stack uses under `cores` cores over two 1-second samples in a row (the notifier
    delivering the last confirmations, autovacuum after a burst), so each window starts from a
    quiet stack. Idle, the four services and the broker use about 0.2 cores (consumers poll the
    broker every 50 ms). Returns the seconds waited and the cores used in the last second."""
    started = time.monotonic()
    quiet, used = 0, 0.0
    while quiet < 2 and time.monotonic() - started < timeout_s:
        processes = [p for name, group in stack_processes(stack).items() if name in SYSTEM for p in group]
        before = _cpu_seconds(processes)
        await asyncio.sleep(1.0)
        used = _cpu_seconds(processes) - before
        quiet = quiet + 1 if used < cores else 0
    return time.monotonic() - started, used


async def settle(stack: Devstack, timeout_s: float) -> None:
    """Quiescent (every outbox sent, every consumer caught up), then the devstack's quiescence
    probe closed, so it does not load the broker and this process through the next window."""
    await stack.wait_quiescent(timeout=timeout_s)
    await stack.close_probe()


async def stock_up(stack: Devstack, stock: dict[str, int], timeout_s: float = 60.0) -> None:
    """Counted units go to the allocator first (the book is empty, so it puts them away): wait
    until they are on the shelf."""
    async with httpx.AsyncClient(base_url=stack.base_url("inventory"), timeout=30) as inventory:
        counts = [inventory.post("/v1/stock-adjustments", json={"sku": sku, "delta": units, "reason": "flash sale"})
                  for sku, units in stock.items()]
        for counted in await asyncio.gather(*counts):
            counted.raise_for_status()
    deadline = time.monotonic() + timeout_s
    async with stack.connect("inventory") as conn:
        while True:
            rows = await conn.fetch("SELECT sku, available, pending FROM stock WHERE sku = ANY($1::text[])", list(stock))
            if all(r["available"] == stock[r["sku"]] and r["pending"] == 0 for r in rows) and len(rows) == len(stock):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"stock not on the shelf after {timeout_s} s: {[dict(r) for r in rows]}")
            await asyncio.sleep(0.1)


