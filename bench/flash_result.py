"""What a flash sale run measured: its configuration, the posting windows of the system and of
anchor A2, CPU and memory per process, the ratios to A2, the goals, the checks, and the report."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.flash_load import Load
from bench.flash_stack import SYSTEM
from bench.measures import percentile
from shared.settings import SERVICES

ANCHOR_PORT = 18690


GOAL_ANCHOR_SHARE = 0.5  # settled orders/s >= half of A2's requests/s
GOAL_STRETCH_PER_S = 1_000
GOAL_CPU_RATIO = 3.0  # total CPU per order <= 3x A2's CPU per request
GOAL_RSS_MB = 150.0  # per service


@dataclass(frozen=True)
class FlashConfig:
    seconds: float | None = 20.0  # posting window; ignored when `orders` is given
    orders: int | None = None  # a fixed count instead of a window
    connections: int = 32
    skus: int = 20
    stock_share: float = 0.10  # stock on hand per SKU, as a share of its demand
    warm_up_orders: int = 500  # on SKUs of their own, before anything is measured; 0: none
    anchor: bool = True  # start A2 and time it before and after the system's window
    measure: bool = True  # CPU per process, peak RSS, and waits for an idle stack between windows
    anchor_port: int = ANCHOR_PORT
    settle_timeout_s: float = 300.0
    seed: int | None = None  # of the demand; random when None


@dataclass
class Window:
    """One posting window, summarized."""

    requests: int
    accepted: int
    errors: int
    window_s: float
    per_s: float  # accepted requests per second of the window (first sent -> last answered)
    latency_ms: dict[str, float]
    statuses: dict[str, int]

    @classmethod
    def of(cls, load: Load) -> Window:
        lat = load.latencies_ms
        return cls(load.requests, len(load.accepted), load.error_count, load.window_s, load.accepted_per_s,
                   {"p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99), "max": max(lat, default=0.0)},
                   {str(k): v for k, v in sorted(load.statuses.items())})


@dataclass
class AnchorRun:
    window: Window
    cpu_s: dict[str, float]  # the anchor's uvicorn process, PostgreSQL, the load generator
    rows: int  # rows in the scratch table afterwards

    @property
    def cpu_ms_per_request(self) -> float:
        used = self.cpu_s.get("anchor", 0.0) + self.cpu_s.get("postgres", 0.0)
        return used * 1000 / self.window.accepted if self.window.accepted else 0.0


@dataclass
class FlashResult:
    config: FlashConfig
    tag: str
    skus: list[str]
    stock: dict[str, int]  # units on hand per SKU before the sale
    posting: Window
    settle_s: float | None  # first POST -> no line pending
    demand: dict[str, int] = field(default_factory=dict)  # units ordered per SKU by the accepted orders
    lines_per_sku: dict[str, int] = field(default_factory=dict)  # lines ordered per SKU by the accepted orders
    lines: int = 0
    ship_complete_orders: int = 0
    warm_up: Window | None = None
    line_states: dict[str, int] = field(default_factory=dict)
    shipments: int = 0  # ShipmentRequested in the orders outbox for the run's orders (warm-up included)
    cpu_s: dict[str, float] = field(default_factory=dict)  # first POST -> settled, per process group
    cpu_to_idle_s: dict[str, float] = field(default_factory=dict)  # first POST -> the stack idle again
    to_idle_s: float = 0.0
    machine_cpu_s: tuple[float, float] = (0.0, 0.0)  # the machine's (busy, all) CPU seconds, first POST -> settled
    idle_cores: float = 0.0  # what the idle stack used just before the window (consumers polling the broker)
    accepted_ids: list[str] = field(default_factory=list, repr=False)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    anchor_before: AnchorRun | None = None
    anchor_after: AnchorRun | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return all(self.checks.values())

    @property
    def settled_per_s(self) -> float:
        return self.posting.accepted / self.settle_s if self.settle_s else 0.0

    @property
    def stock_share(self) -> float:
        return sum(self.stock.values()) / max(sum(self.demand.values()), 1)

    @property
    def top_sku_share(self) -> float:
        """The busiest SKU's share of all ordered lines."""
        return max(self.lines_per_sku.values(), default=0) / max(self.lines, 1)

    @property
    def cpu_ms_per_order(self) -> dict[str, float]:
        n = self.posting.accepted
        return {name: seconds * 1000 / n for name, seconds in self.cpu_s.items()} if n else {}

    @property
    def system_cpu_ms_per_order(self) -> float:
        return sum(v for k, v in self.cpu_ms_per_order.items() if k in SYSTEM)

    @property
    def anchor_per_s(self) -> float:
        runs = [r.window.per_s for r in (self.anchor_before, self.anchor_after) if r is not None]
        return sum(runs) / len(runs) if runs else 0.0

    @property
    def anchor_cpu_ms_per_request(self) -> float:
        runs = [r.cpu_ms_per_request for r in (self.anchor_before, self.anchor_after) if r is not None and r.cpu_s]
        return sum(runs) / len(runs) if runs else 0.0

    def ratios(self) -> dict[str, float]:
        a, cpu = self.anchor_per_s, self.anchor_cpu_ms_per_request
        return {
            "settled_per_anchor": self.settled_per_s / a if a else 0.0,
            "acknowledged_per_anchor": self.posting.per_s / a if a else 0.0,
            "cpu_per_order_per_anchor_request": self.system_cpu_ms_per_order / cpu if cpu else 0.0,
        }

    def goals(self) -> dict[str, bool]:
        ratios = self.ratios()
        goals = {
            f"settled >= {GOAL_ANCHOR_SHARE}x A2": ratios["settled_per_anchor"] >= GOAL_ANCHOR_SHARE,
            f"stretch: settled >= {GOAL_STRETCH_PER_S:,} orders/s": self.settled_per_s >= GOAL_STRETCH_PER_S,
        }
        if self.cpu_s and self.anchor_cpu_ms_per_request:
            goals[f"total CPU per order <= {GOAL_CPU_RATIO:.0f}x A2's per request"] = (
                ratios["cpu_per_order_per_anchor_request"] <= GOAL_CPU_RATIO
            )
        if self.peak_rss_mb:
            goals[f"every service <= {GOAL_RSS_MB:.0f} MB peak RSS"] = all(
                v <= GOAL_RSS_MB for k, v in self.peak_rss_mb.items() if k in SERVICES)
        return goals

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "accepted_ids"}
        return data | {
            "settled_per_s": self.settled_per_s, "stock_share": self.stock_share, "top_sku_share": self.top_sku_share,
            "cpu_ms_per_order": self.cpu_ms_per_order, "system_cpu_ms_per_order": self.system_cpu_ms_per_order,
            "anchor_per_s": self.anchor_per_s, "anchor_cpu_ms_per_request": self.anchor_cpu_ms_per_request,
            "ratios": self.ratios(), "goals": self.goals(), "correct": self.correct,
        }


def report(result: FlashResult, where: str) -> str:
    c, p = result.config, result.posting
    rows: list[tuple[str, str]] = [
        ("stack", where),
        ("sale", f"{len(result.skus)} SKUs, stock {sum(result.stock.values()):,} units = {result.stock_share:.1%} of the"
                 f" {sum(result.demand.values()):,} units ordered; busiest SKU {result.top_sku_share:.0%} of the lines"),
        ("orders", f"{p.accepted:,} accepted ({result.lines:,} lines, {result.ship_complete_orders:,} ship-complete),"
                   f" {p.errors} refused or failed, from {c.connections} connections"
                   + (f" for {c.seconds:.0f} s" if not c.orders else "")),
        ("acknowledged", f"{p.per_s:,.0f} orders/s over {p.window_s:.2f} s; latency p50 {p.latency_ms['p50']:.1f} ms,"
                         f" p99 {p.latency_ms['p99']:.1f} ms, max {p.latency_ms['max']:.0f} ms"),
        ("settled", f"{result.settled_per_s:,.0f} orders/s (first POST -> no line pending: "
                    + (f"{result.settle_s:.2f} s)" if result.settle_s is not None else "NOT settled)")),
        ("line states", ", ".join(f"{k} {v:,}" for k, v in sorted(result.line_states.items()))),
        ("ShipmentRequested", f"{result.shipments:,} (orders outbox, the run's orders and warm-up)"),
    ]
    for label, run in (("A2 before", result.anchor_before), ("A2 after", result.anchor_after)):
        if run is not None:
            w = run.window
            cpu = f"; CPU {run.cpu_ms_per_request:.2f} ms/request (uvicorn + PostgreSQL)" if run.cpu_s else ""
            rows.append((label, f"{w.per_s:,.0f} requests/s ({w.accepted:,} in {w.window_s:.2f} s), p50"
                                f" {w.latency_ms['p50']:.1f} ms, p99 {w.latency_ms['p99']:.1f} ms{cpu}"))
    if result.anchor_per_s:
        ratios = result.ratios()
        rows += [
            ("A2 mean", f"{result.anchor_per_s:,.0f} requests/s" + (
                f", {result.anchor_cpu_ms_per_request:.2f} CPU-ms/request" if result.anchor_cpu_ms_per_request else "")),
            ("settled / A2", f"{ratios['settled_per_anchor']:.2f}"),
            ("acknowledged / A2", f"{ratios['acknowledged_per_anchor']:.2f}"),
        ]
        if result.cpu_s and result.anchor_cpu_ms_per_request:
            rows.append(("CPU per order / A2's", f"{ratios['cpu_per_order_per_anchor_request']:.1f}x"))
    if result.cpu_s:
        per = result.cpu_ms_per_order
        rows.append(("CPU-ms per order", ", ".join(f"{k} {v:.2f}" for k, v in per.items())
                     + f"; system total {result.system_cpu_ms_per_order:.2f}"))
        cores = os.cpu_count() or 1
        rows.append(("CPU seconds", ", ".join(f"{k} {v:.1f}" for k, v in result.cpu_s.items())
                     + (f" (of {cores * result.settle_s:.1f} core-seconds)" if result.settle_s else "")))
        busy, every = result.machine_cpu_s
        if every:
            stack = sum(result.cpu_s.values())
            rows.append(("machine", f"{busy:.1f} of its {every:.1f} core-seconds busy in the window ({busy / every:.0%}):"
                                    f" the stack and bench {stack:.1f}, the rest (mail receiver, other work) {busy - stack:.1f}"))
    if result.cpu_to_idle_s and result.posting.accepted:
        per = {k: v * 1000 / result.posting.accepted for k, v in result.cpu_to_idle_s.items()}
        total = sum(v for k, v in per.items() if k in SYSTEM)
        rows.append(("... until idle again", ", ".join(f"{k} {v:.2f}" for k, v in per.items())
                     + f"; system total {total:.2f} (first POST -> idle, {result.to_idle_s:.1f} s, idle polling included)"))
    if result.idle_cores:
        rows.append(("idle stack", f"{result.idle_cores:.2f} cores just before the window (consumers and relays polling),"
                                   f" {result.idle_cores * 1000 / max(result.posting.per_s, 1):.1f} CPU-ms per order"
                                   " at the acknowledged rate"))
    if result.peak_rss_mb:
        rows.append(("peak RSS (VmHWM)", ", ".join(f"{k} {v:.0f} MB" for k, v in result.peak_rss_mb.items())))
    width = max(len(name) for name, _ in rows)
    out = ["", "flash sale benchmark", "-" * (width + 100), *(f"{name.ljust(width)}  {value}" for name, value in rows)]
    goals = result.goals().items()
    out += ["goals (reported, not errors)", *(f"  {'met    ' if ok else 'NOT met'}  {name}" for name, ok in goals)]
    out += ["checks", *(f"  {'ok    ' if ok else 'FAILED'}  {name}" for name, ok in result.checks.items())]
    out += [f"problem: {problem}" for problem in result.problems]
    return "\n".join(out)


