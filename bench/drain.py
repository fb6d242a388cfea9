"""Drain benchmark: receipts covering a 45,000-line backorder book, through the real allocator,
PostgreSQL and broker, next to a one-statement SQL anchor timed in the same run.

    python -m bench.drain [--lines 45000] [--skus 20] [--receipts-per-sku 5] [--runs 3] [--quick]

See bench/README.md for what is measured and why.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.cpu import CpuMeter, stack_processes
from bench.drain_book import Anchor, SeededLine, book_state, remove_run, seed_book, seed_purchase_orders, time_anchor, vacuum
from bench.drain_bus import AllocationWatcher, Receipt, Seen, publish_receipts, split_receipts, warm_up
from bench.drain_step import AllocationStep, date_book, time_allocation_step
from bench.measures import drop_database, percentile
from shared.devstack.stack import REPO, Devstack
from shared.settings import Settings

RESULTS = REPO / "bench" / "results" / "drain-latest.json"
GOAL_LINES_PER_S = 5_000
GOAL_ANCHOR_RATIO = 3.0


@dataclass(frozen=True)
class DrainConfig:
    lines: int = 45_000
    skus: int = 20
    receipts_per_sku: int = 5
    timeout_s: float = 600.0
    anchor_repeats: int = 3
    keep: bool = False  # leave the run's rows in the allocator database for inspection
    runs: int = 3  # drains in one stack; the median one is reported (one run swings ~25% on a shared machine)
    dated: bool = False  # each receipt delivers an open purchase order, so every line has a promised date


@dataclass
class DrainResult:
    config: DrainConfig
    tag: str
    skus: list[str]
    lines: int
    units: int
    receipts: int
    seed_s: float
    quiesce_s: float
    elapsed_s: float
    lines_per_s: float
    events: int
    duplicates: int
    first_allocation_s: float
    latency_ms: dict[str, float]
    anchor: Anchor
    step: AllocationStep
    cpu_s: dict[str, float]
    checks: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lines_dated: int = 0  # with --dated: seeded lines promised a date before the receipts

    @property
    def correct(self) -> bool:
        return all(self.checks.values())

    @property
    def anchor_ratio(self) -> float:
        return self.elapsed_s / self.anchor.seconds if self.anchor.seconds > 0 else math.inf

    @property
    def step_ratio(self) -> float:
        """The allocation step alone (our receipt code, no broker) against the anchor."""
        return self.step.seconds / self.anchor.seconds if self.anchor.seconds > 0 else math.inf

    @property
    def event_floor_ratio(self) -> float:
        """Writing the per-line events alone, set-based, against the anchor: a lower bound."""
        return self.step.event_floor_seconds / self.anchor.seconds if self.anchor.seconds > 0 else math.inf

    @property
    def anchor_with_events_ratio(self) -> float:
        """End to end against the anchor plus the event floor: the matching and one durable event
        per line, each done the cheapest way, both measured in this run."""
        floor = self.anchor.seconds + self.step.event_floor_seconds
        return self.elapsed_s / floor if floor > 0 else math.inf

    @property
    def anchor_lines_per_s(self) -> float:
        return self.lines / self.anchor.seconds if self.anchor.seconds > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            anchor_ratio=self.anchor_ratio,
            step_ratio=self.step_ratio,
            event_floor_ratio=self.event_floor_ratio,
            anchor_with_events_ratio=self.anchor_with_events_ratio,
            anchor_lines_per_s=self.anchor_lines_per_s,
            correct=self.correct,
            goal={
                "lines_per_s": GOAL_LINES_PER_S,
                "anchor_ratio": GOAL_ANCHOR_RATIO,
                "met": self.lines_per_s >= GOAL_LINES_PER_S and self.anchor_ratio <= GOAL_ANCHOR_RATIO,
            },
        )
        return data


async def run_drain(stack: Devstack, config: DrainConfig, progress: bool = False) -> DrainResult:
    """Seed, quiesce, time the anchor, publish the receipts, watch the allocations, verify.

    Works against any running Devstack whose allocator consumes the receipts topic (the
    benchmark's own allocator-only stack, or the test session's full stack): the run's SKUs and
    ids are unique, and only its own rows are removed at the end."""

    def say(message: str) -> None:
        if progress:
            print(f"  {message}", flush=True)

    tag = uuid.uuid4().hex[:10]
    skus = [f"DRAIN-{tag}-{n:03d}" for n in range(config.skus)]
    warm_up_sku = f"DRAIN-{tag}-warm-up"
    conn = await asyncpg.connect(stack.database_url("allocator"))
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers, acks="all", linger_ms=2)
    watcher: AllocationWatcher | None = None
    watching: asyncio.Task[None] | None = None
    inbox_ids: list[uuid.UUID] = []
    try:
        started = time.perf_counter()
        seeded = await seed_book(conn, tag, skus, config.lines, datetime.now(UTC))
        seed_s = time.perf_counter() - started
        say(f"seeded {len(seeded)} waiting lines over {len(skus)} SKUs in {seed_s:.2f} s (setup, not measured)")
        started = time.perf_counter()
        await producer.start()
        # Not measured: a consumer that is still joining its group (seconds on the embedded broker) would be.
        inbox_ids += await warm_up(producer, stack.settings, Receipt(f"RCPT-{tag}-warm-up", warm_up_sku, 1))
        await stack.wait_quiescent(timeout=120)
        quiesce_s = time.perf_counter() - started

        supply: dict[str, int] = defaultdict(int)
        for line in seeded:
            supply[line.sku] += line.qty
        anchor = await time_anchor(conn, tag, skus, dict(supply), config.anchor_repeats)
        say(f"anchor: one INSERT ... SELECT with a running sum, {anchor.seconds * 1000:.1f} ms (median of {len(anchor.runs)})")

        receipts = split_receipts(dict(supply), config.receipts_per_sku, tag, dated=config.dated)
        lines_dated = 0
        if config.dated:
            await seed_purchase_orders(conn, receipts)
            lines_dated = await date_book(stack.settings.service_database_url("allocator"), stack.settings, skus)
            await vacuum(conn)
            say(f"dated: {len(receipts)} purchase orders, one per receipt; {lines_dated} lines dated (setup, not measured)")
        step = await time_allocation_step(stack.settings.service_database_url("allocator"), stack.settings, receipts)
        await vacuum(conn)  # the rolled-back step's dead rows must not slow the drain that follows
        say(
            f"allocation step: the allocator's receipt handler in-process, {step.seconds * 1000:.0f} ms; "
            f"its events alone, one statement, {step.event_floor_seconds * 1000:.0f} ms (rolled back)"
        )
        watcher = AllocationWatcher(stack.settings, {(str(s.order_id), s.line_no): s.qty for s in seeded})
        await watcher.start()
        cpu = CpuMeter(lambda: stack_processes(stack))
        cpu.start()
        watching = asyncio.create_task(watcher.run(config.timeout_s))
        published, event_ids = await publish_receipts(producer, stack.settings, receipts)
        inbox_ids += event_ids
        say(f"published {len(receipts)} receipts covering {sum(supply.values())} units; waiting for the allocations")
        await watching
        cpu_s = cpu.stop()

        first_publish = min(published.values())
        last_seen = max(s.received_at for s in watcher.seen)
        elapsed = last_seen - first_publish
        latencies = [(s.received_at - published[s.receipt_id]) * 1000 for s in watcher.seen]
        result = DrainResult(
            config=config,
            tag=tag,
            skus=skus,
            lines=len(seeded),
            units=sum(supply.values()),
            receipts=len(receipts),
            seed_s=seed_s,
            quiesce_s=quiesce_s,
            elapsed_s=elapsed,
            lines_per_s=len(seeded) / elapsed,
            events=len(watcher.seen),
            duplicates=watcher.duplicates,
            first_allocation_s=min(s.received_at for s in watcher.seen) - first_publish,
            latency_ms={"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "max": max(latencies)},
            anchor=anchor,
            step=step,
            cpu_s=cpu_s,
            lines_dated=lines_dated,
        )
        await verify(result, conn, seeded, dict(supply), watcher, [r.receipt_id for r in receipts])
        return result
    finally:
        if watching is not None and not watching.done():
            watching.cancel()
        if watcher is not None:
            await watcher.stop()
        await producer.stop()  # a no-op when it never started
        if not config.keep:
            await remove_run(conn, [*skus, warm_up_sku], inbox_ids)
        await conn.close()


async def verify(
    result: DrainResult,
    conn: asyncpg.Connection,
    seeded: list[SeededLine],
    supply: dict[str, int],
    watcher: AllocationWatcher,
    receipt_ids: list[str],
) -> None:
    """Conservation and no over-fill, from the events and from the allocator's tables; FIFO order
    from the events (one SKU's events share a partition, so offsets order them)."""
    state = await book_state(conn, result.skus, receipt_ids)
    checks, problems = result.checks, result.problems
    checks["events: every line got exactly what it waited for"] = watcher.units_missing == 0 and not watcher.overfilled
    checks["book: every seeded line filled"] = state["lines"] == len(seeded) and state["not_filled"] == 0
    checks["book: no line over-filled"] = state["overfilled"] == 0
    checks["book: allocated per SKU == units received"] = state["allocated"] == supply
    put_away = state["put_away"]
    assert isinstance(put_away, dict)
    exact = set(put_away) == set(supply) and not any(put_away.values())
    checks["book: nothing put away (receipts cover the book exactly)"] = exact
    fifo = fifo_violations(seeded, watcher.seen)
    checks["events: lines served in FIFO order per SKU"] = not fifo
    anchor = result.anchor
    checks["anchor: allocated every line and unit"] = anchor.lines == len(seeded) and anchor.units == sum(supply.values())
    if state["allocated"] != supply:
        problems.append(f"allocated per SKU {state['allocated']} != received {supply}")
    problems.extend(fifo[:5])


def fifo_violations(seeded: list[SeededLine], seen: list[Seen]) -> list[str]:
    """Lines of a SKU must first appear in the allocations in the FIFO order of the book."""
    keys = {(str(line.order_id), line.line_no): line.fifo_key for line in seeded}
    order: dict[str, list[tuple[int, tuple[str, int]]]] = defaultdict(list)
    first: set[tuple[str, int]] = set()
    for event in sorted(seen, key=lambda s: (s.sku, s.offset)):
        if event.line not in first:
            first.add(event.line)
            order[event.sku].append((event.offset, event.line))
    problems = []
    for sku, lines in order.items():
        for (_, before), (_, after) in itertools.pairwise(lines):
            if keys[before] > keys[after]:
                problems.append(f"{sku}: line {after} served before the earlier-ordered line {before}")
    return problems


def report(result: DrainResult, where: str, title: str = "drain benchmark") -> str:
    ratio_ok = result.anchor_ratio <= GOAL_ANCHOR_RATIO
    rate_ok = result.lines_per_s >= GOAL_LINES_PER_S
    rows = [
        ("stack", where),
        (
            "book",
            f"{result.lines} waiting lines, {result.units} units, {len(result.skus)} SKUs"
            + (", every line dated: each receipt delivers an open purchase order" if result.config.dated else ""),
        ),
        ("receipts", f"{result.receipts} GoodsReceived ({result.config.receipts_per_sku} per SKU), published at once"),
        ("setup (not measured)", f"seed {result.seed_s:.2f} s, warm-up receipt + quiesce {result.quiesce_s:.2f} s"),
        ("drain time", f"{result.elapsed_s:.3f} s (first receipt published -> last BackorderAllocated seen)"),
        ("allocated lines/s", f"{result.lines_per_s:,.0f}  (goal >= {GOAL_LINES_PER_S:,}: {'met' if rate_ok else 'MISSED'})"),
        ("BackorderAllocated", f"{result.events} events ({result.duplicates} redelivered copies ignored)"),
        ("first allocation", f"{result.first_allocation_s * 1000:.0f} ms after the first receipt"),
        (
            "latency p50 / p99 / max",
            " / ".join(f"{result.latency_ms[k]:.0f} ms" for k in ("p50", "p99", "max"))
            + "  (GoodsReceived published -> its BackorderAllocated received)",
        ),
        (
            "anchor (1 SQL statement)",
            f"{result.anchor.seconds * 1000:.1f} ms = {result.anchor_lines_per_s:,.0f} lines/s"
            f"  (runs: {', '.join(f'{r * 1000:.1f}' for r in result.anchor.runs)} ms)",
        ),
        (
            "ours / anchor (time)",
            f"{result.anchor_ratio:.1f}x end to end  (goal <= {GOAL_ANCHOR_RATIO:.0f}x: {'met' if ratio_ok else 'MISSED'})",
        ),
        (
            "allocation step",
            f"{result.step.seconds * 1000:.0f} ms: every receipt through the allocator's handler in-process, "
            f"{result.step.events} outbox rows, no broker (rolled back)",
        ),
        (
            "allocation step / anchor",
            f"{result.step_ratio:.1f}x"
            f"  (<= {GOAL_ANCHOR_RATIO:.0f}x: {'yes' if result.step_ratio <= GOAL_ANCHOR_RATIO else 'no'})",
        ),
        (
            "event floor / anchor",
            f"{result.event_floor_ratio:.1f}x: the step's {result.step.events} outbox rows written "
            f"again by one INSERT ... SELECT, {result.step.event_floor_seconds * 1000:.0f} ms",
        ),
        (
            "ours / (anchor + event floor)",
            f"{result.anchor_with_events_ratio:.1f}x end to end: against matching plus one durable event per line,"
            f" each the cheapest way ({(result.anchor.seconds + result.step.event_floor_seconds) * 1000:.0f} ms)",
        ),
    ]
    cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in result.cpu_s.items())
    cores = os.cpu_count() or 1
    rows.append(("CPU seconds in the drain", f"{cpu} (of {cores * result.elapsed_s:.1f} core-seconds on {cores} cores)"))
    rows += [(f"check: {name}", "ok" if ok else "FAILED") for name, ok in result.checks.items()]
    width = max(len(name) for name, _ in rows)
    lines = ["", title, "-" * (width + 60)]
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    lines += [f"problem: {p}" for p in result.problems]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> tuple[DrainConfig, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=None, help="waiting lines in the book (default 45000; 2000 with --quick)")
    parser.add_argument("--skus", type=int, default=20)
    parser.add_argument("--receipts-per-sku", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a ~2,000-line run (a smoke check, not a measurement)")
    parser.add_argument("--dated", action="store_true", help="open purchase orders behind the receipts: every line dated")
    parser.add_argument("--runs", type=int, default=None, help="drains to run, each on a fresh book (default 3; 1 with --quick)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the drain")
    parser.add_argument("--keep", action="store_true", help="leave the run's rows in the allocator database")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = parser.parse_args(argv)
    lines = args.lines if args.lines is not None else (2_000 if args.quick else 45_000)
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    if lines < 1 or args.skus < 1 or args.receipts_per_sku < 1 or runs < 1:
        parser.error("--lines, --skus, --receipts-per-sku and --runs must be positive")
    config = DrainConfig(lines, args.skus, args.receipts_per_sku, args.timeout, keep=args.keep, runs=runs, dated=args.dated)
    return config, args.json


async def bench(config: DrainConfig) -> tuple[list[DrainResult], str]:
    """Start our own stack with the allocator only, so what is measured is the allocator; drain
    `config.runs` books in it, one after the other."""
    settings = Settings(orders_port=18401, inventory_port=18402, allocator_port=18403, notifier_port=18404)
    stack = Devstack(settings, root=REPO / ".devstack" / "bench", log_to_files=True, pg_port=25435, kafka_port=29095)
    print("starting the stack: PostgreSQL + broker + the allocator service only ...", flush=True)
    try:
        # Devstack.start's steps, with a fresh allocator database in between when the servers are
        # the benchmark's own: indexes bloated by earlier runs would otherwise make runs incomparable.
        await stack.start_servers()
        if stack.embedded:
            await drop_database(stack.settings.admin_database_url(), stack.settings.database_prefix + "allocator")
        await stack.prepare(("allocator",))
        stack.start_service("allocator", stack.settings.port("allocator"))
        await stack.wait_ready()
        servers = (
            "embedded PostgreSQL (fresh allocator database) + embedded broker"
            if stack.embedded
            else ("DATABASE_URL + KAFKA_BOOTSTRAP_SERVERS")
        )
        where = f"{servers}; services: allocator only (consumer -> handler -> outbox -> relay -> broker)"
        print(f"  {where}; allocator log in {stack.root / 'logs'}", flush=True)
        results = []
        for run in range(1, config.runs + 1):
            print(f"run {run} of {config.runs}", flush=True)
            results.append(await run_drain(stack, config, progress=True))
        return results, where
    finally:
        await stack.stop()


def median_run(results: list[DrainResult]) -> DrainResult:
    """The run with the median drain time (the lower middle one of an even count)."""
    return sorted(results, key=lambda r: r.elapsed_s)[(len(results) - 1) // 2]


def runs_summary(results: list[DrainResult], median: DrainResult) -> str:
    """One line per run, so the spread is seen next to the median that is reported."""
    lines = ["", f"all runs (the median one, by drain time, is reported above; {len(results)} runs)"]
    for n, r in enumerate(results, 1):
        mark = "  <- median" if r is median else ""
        lines.append(
            f"  run {n}: {r.lines_per_s:,.0f} lines/s, drain {r.elapsed_s:.2f} s, anchor {r.anchor.seconds * 1000:.0f} ms,"
            f" ours/anchor {r.anchor_ratio:.1f}x, step/anchor {r.step_ratio:.1f}x,"
            f" event floor/anchor {r.event_floor_ratio:.1f}x, ours/(anchor+floor) {r.anchor_with_events_ratio:.1f}x,"
            f" checks {'ok' if r.correct else 'FAILED'}{mark}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config, json_path = parse_args(argv)
    results, where = asyncio.run(bench(config))
    median = median_run(results)
    title = "drain benchmark" if len(results) == 1 else f"drain benchmark: the median of {len(results)} runs"
    print(report(median, where, title))
    if len(results) > 1:
        print(runs_summary(results, median))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data = median.to_json() | {
        "stack": where,
        "measured_at": datetime.now(UTC).isoformat(),
        "runs": [r.to_json() for r in results],
    }
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nresults written to {json_path}")
    return 0 if all(r.correct for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
