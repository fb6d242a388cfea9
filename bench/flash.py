"""Flash sale benchmark: orders for 20 skewed, backorderable SKUs with stock for a tenth of the demand,
posted over HTTP from 32 connections to the whole system (orders, inventory, allocator, notifier),
until every accepted order has settled; next to anchor A2, timed in the same run on the same
PostgreSQL before and after: the same bodies validated by the same model and inserted as one row.

    python -m bench.flash [--seconds 20 | --orders 50000] [--connections 32] [--quick]

See bench/README.md for what is measured and why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.cpu import CpuMeter, stack_processes
from bench.flash_anchor import DATABASE as ANCHOR_DATABASE
from bench.flash_anchor import AnchorServer
from bench.flash_load import Demand, Load, plan_stock, post_for
from bench.flash_result import AnchorRun, FlashConfig, FlashResult, Window, report
from bench.flash_stack import machine_cpu_seconds, peak_rss_mb, settle, stock_up, wait_idle
from bench.flash_state import read_and_check, wait_settled
from bench.measures import drop_database
from shared.devstack.mailsink import free_port
from shared.devstack.stack import REPO, Devstack
from shared.settings import SERVICES, Settings

RESULTS = REPO / "bench" / "results" / "flash-latest.json"
PORTS = {"orders": 18601, "inventory": 18602, "allocator": 18603, "notifier": 18604}
PG_PORT, KAFKA_PORT = 25439, 29099  # A2 listens on FlashConfig.anchor_port, 18690
PREPARED_PER_S = 2_000  # bodies encoded before the windows, per second of a window
# A window's intake rate as a share of the warm-up's (the warm-up starts from an idle stack; here
# 0.64-1.1, 0.88 on average over five runs): the stock for a duration is planned from it.
WINDOW_RATE_SHARE = 0.85


async def time_anchor(stack: Devstack, anchor: AnchorServer, body: Callable[[int], bytes], config: FlashConfig) -> AnchorRun:
    """A2 over the same bodies as the system's window, the same client, the same duration or count."""
    await anchor.reset()
    assert anchor.process is not None
    own = psutil.Process(anchor.process.pid)

    def groups() -> dict[str, list[psutil.Process]]:
        return {"anchor": [own], "postgres": stack_processes(stack).get("postgres", []),
                "bench (this process)": [psutil.Process(os.getpid())]}

    meter = CpuMeter(groups) if config.measure else None
    if meter is not None:
        meter.start()
    load = await post_for(anchor.host, anchor.port, "/v1/orders", body, config.connections,
                          seconds=None if config.orders else config.seconds, count=config.orders)
    cpu = meter.stop() if meter is not None else {}
    return AnchorRun(Window.of(load), cpu, await anchor.rows())


@dataclass
class Sale:
    """One run's SKUs and orders: the measured ones, and a warm-up on SKUs of its own."""

    stack: Devstack
    config: FlashConfig
    progress: bool = False
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    began: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        seed = self.config.seed if self.config.seed is not None else random.randrange(2**31)
        self.skus = [f"FLASH-{self.tag}-{n:02d}" for n in range(1, self.config.skus + 1)]
        self.warm_skus = [f"FLASH-{self.tag}-W{n}" for n in (1, 2)]
        self.demand = Demand(self.tag, tuple(self.skus), seed)
        self.warm = Demand(f"{self.tag}w", tuple(self.warm_skus), seed + 1)
        self.encoded: list[bytes] = []

    def say(self, message: str) -> None:
        if self.progress:
            print(f"  [{time.monotonic() - self.began:5.1f} s] {message}", flush=True)

    def body(self, i: int) -> bytes:
        """Bodies are encoded before the windows, so the load generator spends the cores on sending."""
        return self.encoded[i] if i < len(self.encoded) else self.demand.encoded(i)

    async def post(self, port: int, body: Callable[[int], bytes], count: int | None = None) -> Load:
        c = self.config
        if count is None and c.orders is None:
            return await post_for(self.stack.settings.host, port, "/v1/orders", body, c.connections, seconds=c.seconds)
        return await post_for(self.stack.settings.host, port, "/v1/orders", body, c.connections, count=count or c.orders)

    async def idle(self) -> float:
        """Wait for an idle stack; returns the cores it used in the last second (0 unmeasured)."""
        if not self.config.measure:
            return 0.0
        waited, cores = await wait_idle(self.stack)
        self.say(f"stack idle after {waited:.0f} s ({cores:.2f} cores in the last second)")
        return cores

    async def warm_up(self, anchor: AnchorServer | None) -> Load | None:
        """Not measured: consumers joining their groups, pools filling, code paths warm."""
        count = self.config.warm_up_orders
        if not count:
            return None
        await stock_up(self.stack, plan_stock(self.warm.units(count), self.config.stock_share))
        load = await self.post(self.stack.services["orders"].port, self.warm.encoded, count)
        if anchor is not None:
            await self.post(anchor.port, self.warm.encoded, count)
        self.say(f"warm-up: {len(load.accepted)} orders at {load.accepted_per_s:,.0f}/s on SKUs of their own")
        await settle(self.stack, self.config.settle_timeout_s)
        return load

    async def stock_for(self, warm_up: Load | None) -> dict[str, int]:
        """A share of the demand of the orders the window will post: known for a count, estimated
        from the warm-up's rate for a duration."""
        c = self.config
        if c.orders:
            planned = c.orders
        else:
            rate = warm_up.accepted_per_s if warm_up and warm_up.accepted_per_s else 300.0
            planned = max(1, round(WINDOW_RATE_SHARE * rate * (c.seconds or 0)))
        # For a duration, enough bodies for A2 too (it takes 800-1,100 a second here).
        prepared = planned if c.orders else max(2 * planned, round(PREPARED_PER_S * (c.seconds or 0)))
        self.encoded = [self.demand.encoded(i) for i in range(prepared)]
        expected = plan_stock(self.demand.units(planned), c.stock_share)
        stock = {sku: expected.get(sku, 1) for sku in self.skus}
        await stock_up(self.stack, stock)
        if c.measure:  # the put-aways' echoes consumed everywhere, so the next window starts quiet
            await settle(self.stack, 120)
        self.say(f"stock: {sum(stock.values()):,} units over {len(self.skus)} SKUs, {c.stock_share:.0%} of the demand of"
                 f" {planned:,} {'orders' if c.orders else 'orders expected from the warm-up rate'}")
        return stock

    async def sell(self, stock: dict[str, int]) -> FlashResult:
        """The window: post, wait until no line is pending (CPU measured until then), check."""
        c = self.config
        meter = CpuMeter(lambda: stack_processes(self.stack)) if c.measure else None
        if meter is not None:
            meter.start()
        machine_before = machine_cpu_seconds()
        load = await self.post(self.stack.services["orders"].port, self.body)
        self.say(f"posted: {len(load.accepted):,} accepted at {load.accepted_per_s:,.0f}/s; waiting until settled")
        settled_at = await wait_settled(self.stack, self.skus, c.settle_timeout_s)
        cpu = meter.stop() if meter is not None else {}
        machine_after = machine_cpu_seconds()
        settle_s = settled_at - load.first_sent if settled_at is not None else None
        self.say(f"settled {settle_s:.2f} s after the first POST" if settle_s is not None else "NOT settled")
        await settle(self.stack, c.settle_timeout_s)
        await self.idle()
        cpu_to_idle = meter.stop() if meter is not None else {}  # a CpuMeter counts from start() on every stop()
        result = FlashResult(config=c, tag=self.tag, skus=self.skus, stock=stock, posting=Window.of(load), settle_s=settle_s,
                             cpu_s=cpu, cpu_to_idle_s=cpu_to_idle, to_idle_s=time.monotonic() - load.first_sent,
                             machine_cpu_s=(machine_after[0] - machine_before[0], machine_after[1] - machine_before[1]))
        for index, _ in load.accepted:
            result.ship_complete_orders += not self.demand.body(index)["shipping"]["partial_allowed"]
            for sku, qty in self.demand.lines(index):
                result.demand[sku] = result.demand.get(sku, 0) + qty
                result.lines_per_sku[sku] = result.lines_per_sku.get(sku, 0) + 1
        result.lines = sum(result.lines_per_sku.values())
        result.checks["intake: every POST answered 201"] = load.error_count == 0 and bool(load.accepted)
        result.checks["orders: settled within the timeout"] = settle_s is not None
        result.problems += load.errors
        result.accepted_ids = [order_id for _, order_id in load.accepted]
        return result


async def run_flash_sale(stack: Devstack, config: FlashConfig, progress: bool = False) -> FlashResult:
    """Register the SKUs, warm up, stock up, [A2 before], the sale until settled, checks, [A2 after].

    Works against any running Devstack with the four services (the benchmark's own, or the test
    session's): the run's SKUs, orders and customers carry a random tag, and only its own rows are
    read. With `config.anchor` false no A2 is started; with `config.measure` false no CPU or memory
    is read and no idle stack awaited."""
    sale = Sale(stack, config, progress)
    anchor = None
    if config.anchor:
        log_path = stack.root / "logs" / "flash-anchor.log"
        anchor = AnchorServer(stack.settings.admin_database_url(), stack.settings.host, config.anchor_port, log_path)
    try:
        async with httpx.AsyncClient(base_url=stack.base_url("inventory"), timeout=30) as inventory:
            puts = [inventory.put(f"/v1/skus/{sku}", json={"backorderable": True}) for sku in sale.skus + sale.warm_skus]
            for registered in await asyncio.gather(*puts):
                registered.raise_for_status()
        if anchor is not None:
            await anchor.start()
        warm_up = await sale.warm_up(anchor)
        stock = await sale.stock_for(warm_up)
        before = after = None
        if anchor is not None:
            await sale.idle()
            before = await time_anchor(stack, anchor, sale.body, config)
            sale.say(f"A2 before: {before.window.accepted:,} requests at {before.window.per_s:,.0f}/s")
        idle_cores = await sale.idle()
        result = await sale.sell(stock)
        result.idle_cores = idle_cores
        result.warm_up = Window.of(warm_up) if warm_up else None
        state = await read_and_check(stack, result.accepted_ids + [i for _, i in (warm_up.accepted if warm_up else [])],
                                     sale.skus + sale.warm_skus)
        result.line_states, result.shipments = dict(state.line_states), state.shipments
        result.checks.update(state.checks)
        result.problems += state.problems
        if config.measure:
            result.peak_rss_mb = {name: round(peak_rss_mb(psutil.Process(service.process.pid)), 1)
                                  for name, service in stack.services.items()}
        if anchor is not None:
            after = await time_anchor(stack, anchor, sale.body, config)
            sale.say(f"A2 after: {after.window.accepted:,} requests at {after.window.per_s:,.0f}/s")
            if config.measure and anchor.process is not None:
                result.peak_rss_mb["A2 anchor"] = round(peak_rss_mb(psutil.Process(anchor.process.pid)), 1)
        result.anchor_before, result.anchor_after = before, after
        for run in (before, after):
            if run is not None:
                ok = run.window.errors == 0 and run.rows == run.window.accepted
                result.checks["A2: every POST answered 201, one row each"] = (
                    result.checks.get("A2: every POST answered 201, one row each", True) and ok)
        return result
    finally:
        if anchor is not None:
            await anchor.stop()


def code_state() -> dict[str, Any]:
    """Which code was measured: the commit and what differed from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    return {"head": git("rev-parse", "--short", "HEAD"), "uncommitted": git("status", "--porcelain").splitlines()}


async def bench(config: FlashConfig) -> tuple[FlashResult, str]:
    """Our own stack with all four services on fresh databases, and the mail receiver in a process
    of its own (the notifier mails every customer)."""
    smtp_port, http_port = free_port(), free_port()
    sink = subprocess.Popen([sys.executable, "-m", "bench.notify_sink", str(smtp_port), str(http_port)],  # noqa: ASYNC220
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    os.environ.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port), SMTP_SECURITY="none")
    settings = Settings(orders_port=PORTS["orders"], inventory_port=PORTS["inventory"], allocator_port=PORTS["allocator"],
                        notifier_port=PORTS["notifier"])
    stack = Devstack(settings, root=REPO / ".devstack" / "bench-flash", log_to_files=True, pg_port=PG_PORT, kafka_port=KAFKA_PORT)
    print("starting the stack: PostgreSQL + broker + the four services ...", flush=True)
    try:
        await stack.start_servers()
        if stack.embedded:
            for name in SERVICES:
                await drop_database(stack.settings.admin_database_url(), stack.settings.database_prefix + name)
            await drop_database(stack.settings.admin_database_url(), ANCHOR_DATABASE)
        await stack.prepare(SERVICES)
        for name in SERVICES:
            stack.start_service(name, stack.settings.port(name))
        await stack.wait_ready()
        servers = ("embedded PostgreSQL (fresh databases) + embedded broker" if stack.embedded
                   else "DATABASE_URL + KAFKA_BOOTSTRAP_SERVERS")
        where = f"{servers}; all four services, one uvicorn worker each; logs in {stack.root / 'logs'}"
        print(f"  {where}", flush=True)
        return await run_flash_sale(stack, config, progress=True), where
    finally:
        await stack.stop(drain=False)
        sink.terminate()
        sink.wait(timeout=10)


def parse_args(argv: list[str] | None) -> tuple[FlashConfig, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench.flash", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0, help="posting window (default 20)")
    parser.add_argument("--orders", type=int, default=None, help="a fixed count of orders instead of a window, e.g. 50000")
    parser.add_argument("--connections", type=int, default=None, help="concurrent connections (default 32; 8 with --quick)")
    parser.add_argument("--quick", action="store_true", help="~300 orders from 8 connections: a smoke run, not a measurement")
    parser.add_argument("--seed", type=int, default=None, help="seed of the demand (random by default)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = parser.parse_args(argv)
    orders = 300 if args.quick and args.orders is None else args.orders
    connections = args.connections or (8 if args.quick else 32)
    if (orders is not None and orders < 1) or args.seconds <= 0 or connections < 1:
        parser.error("--orders, --seconds and --connections must be positive")
    config = FlashConfig(seconds=args.seconds, orders=orders, connections=connections, seed=args.seed,
                         warm_up_orders=50 if args.quick else 500)
    return config, args.json


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config, json_path = parse_args(argv)
    result, where = asyncio.run(bench(config))
    print(report(result, where))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data = result.to_json() | {"stack": where, "measured_at": datetime.now(UTC).isoformat(), "code": code_state()}
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nresults written to {json_path}")
    return 0 if result.correct else 1


if __name__ == "__main__":
    sys.exit(main())
